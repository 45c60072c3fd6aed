"""What comes back from the mailbox: bounces, complaints, unsubscribe mails, provider events.

``verp`` gives each delivery its own signed return path; ``classify`` (mail) and ``providers``
(webhooks) say what came back in one set of words; ``intake`` is the one way in (identify,
record once, act through the members store); ``store`` keeps the events and adds up the
rates; ``inbound`` (SMTP/LMTP), ``imap`` (a mailbox) and ``hooks`` (the webhooks) are the doors.
"""
