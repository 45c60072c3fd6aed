"""The outbound door: notices and test copies are composed like digests, sent, and never
recorded as deliveries."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select

from digest.content import MemberView
from digest.editions import Editions
from digest.mailer import SMTPTransport
from digest.models import Delivery
from digest.outbound import TEST_PREFIX, Outbound
from digest.preview import preview
from digest.settings import Settings
from tests.conftest import SMTPServer
from tests.test_web import NOW, seed


def door(settings: Settings) -> Outbound:
    return Outbound(Editions(settings), lambda: SMTPTransport.from_settings(settings))


def member(email: str = "zoe@example.org") -> MemberView:
    return MemberView(7, email, "Zoë", "pending", "daily", "UTC", 7, ("Space",))


def test_a_notice_carries_the_shared_headers(settings: Settings, smtp_server: SMTPServer) -> None:
    url = "https://news.example.org/confirm/abc"
    sent = door(settings).notice("confirm", member(), {"confirm_url": url}, NOW)
    assert sent.ok and sent.code == 250
    [mail] = smtp_server.messages
    message = mail.message
    assert mail.mail_from == "digest@news.example.org"
    assert message["Subject"] == sent.subject == "Confirm your subscription to Science Digest"
    assert message["Message-ID"] == sent.message_id
    assert "https://news.example.org/unsubscribe/" in message["List-Unsubscribe"]
    assert message["List-Id"] and message["List-Unsubscribe-Post"]
    assert url in message.get_body(("plain",)).get_content()


def test_an_unmailable_address_is_not_sent_and_says_why(
    settings: Settings, smtp_server: SMTPServer
) -> None:
    sent = door(settings).notice("manage", member("zoe@exämple.org"), {"preferences_url": "x"}, NOW)
    assert not sent.ok and "not mailable" in sent.reply
    assert smtp_server.messages == []


def test_a_test_copy_is_marked_addressed_to_the_tester_and_not_a_delivery(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    seed(engine)
    found = preview(engine, settings, Editions(settings), NOW, email="ada@example.org")
    assert found is not None
    sent = door(settings).test_copy(found, "editor@example.org", NOW)
    assert sent.ok and sent.subject.startswith(TEST_PREFIX)
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ["editor@example.org"]
    assert mail.message["Subject"] == TEST_PREFIX + found.rendered.subject
    assert "ada@example.org" not in mail.data.decode("ascii", "replace")
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []


def test_notices_to_real_domains_need_the_postal_address(
    settings: Settings, smtp_server: SMTPServer
) -> None:
    sent = door(settings).notice("manage", member("ann@gmail.com"), {"preferences_url": "x"}, NOW)
    assert not sent.ok and sent.reply.startswith("postal_address is not set")
    assert smtp_server.messages == []
    addressed = settings.replace(postal_address="1 Main Street, Springfield")
    sent = door(addressed).notice("manage", member("ann@gmail.com"), {"preferences_url": "x"}, NOW)
    assert sent.ok and len(smtp_server.messages) == 1
    assert smtp_server.messages[0].message["Feedback-ID"].startswith("manage:")
