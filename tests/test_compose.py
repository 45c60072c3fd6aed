"""Message bytes: headers, part order, CRLF, no header injection, strict parsing."""

from __future__ import annotations

import email.utils
import hashlib
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from digest.compose import UnmailableAddress, compose_message, one_line
from digest.content import Personal, Rendered

DATE = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def make_message_id(unique: str, domain: str) -> str:
    """``<hash@domain>``, the same for the same ``unique``: fixed ids for byte-for-byte tests."""
    digest = hashlib.sha256(unique.encode("utf-8")).hexdigest()[:32]
    domain = one_line(domain).strip("<>@ ") or "localhost"
    if not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
        raise ValueError(f"message id domain {domain!r} is not a plain host name")
    return f"<{digest}@{domain}>"


UNSUB = "https://news.example.org/unsubscribe/" + "t0k3n-" * 20
MAILTO = "mailto:unsubscribe@news.example.org?subject=unsubscribe%20" + "t0k3n-" * 20
HTML = '<!doctype html><html lang="en"><body><p>' + "Grüße &amp; more " * 200 + "</p></body></html>"
TEXT = "Hello Ünïcode\n\n" + "a long line " * 200 + "\n"


def build(**overrides: object) -> bytes:
    args: dict[str, object] = dict(
        from_address="Science Digest <digest@news.example.org>",
        to_email="ann@example.org",
        to_name="Ann Example",
        message_id=make_message_id("daily:2026-11-24:ann", "news.example.org"),
        date=DATE,
        list_id="Science Digest <digest.news.example.org>",
        unsubscribe_url=UNSUB,
        unsubscribe_mailto_url=MAILTO,
    )
    rendered = overrides.pop("rendered", Rendered("Science Digest: news", HTML, TEXT))
    args.update(overrides)
    return compose_message(rendered, **args)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.strict)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        assert not part.defects
        for name, value in part.items():  # header parsing is lazy: touch every header
            assert not getattr(value, "defects", ())
            assert name
    return msg


def test_headers_and_parts() -> None:
    data = build()
    msg = parse(data)
    assert msg["From"] == "Science Digest <digest@news.example.org>"
    assert msg["To"] == "Ann Example <ann@example.org>"
    assert msg["Subject"] == "Science Digest: news"
    assert msg["Date"].datetime == DATE
    assert msg["Message-ID"] == make_message_id("daily:2026-11-24:ann", "news.example.org")
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "Science Digest <digest.news.example.org>"
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>, <{MAILTO}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Bcc"] is None and msg["Reply-To"] is None
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == TEXT
    assert parts[1].get_content().replace("\r\n", "\n").rstrip("\n") == HTML


def test_crlf_and_line_length() -> None:
    data = build()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert data.isascii()


def test_header_injection_in_name_is_neutralised() -> None:
    data = build(
        to_name="Eve\r\nBcc: victim@example.com", rendered=Rendered("Hi\r\nBcc: x@y.z", HTML, TEXT)
    )
    msg = parse(data)
    assert msg["Bcc"] is None
    assert b"\r\nBcc:" not in data
    assert len(msg["To"].addresses) == 1
    assert msg["To"].addresses[0].addr_spec == "ann@example.org"
    assert msg["To"].addresses[0].display_name == "Eve Bcc: victim@example.com"
    assert msg["Subject"] == "Hi Bcc: x@y.z"


def test_bad_recipient_address_is_refused() -> None:
    for bad in ("ann@example.org\r\nBcc: x@y.z", "no-at-sign", "a b@example.org", ""):
        with pytest.raises(ValueError):
            build(to_email=bad)


@pytest.mark.parametrize(
    ("field", "address"),
    [
        ("to_email", "ann@bücher.example"),
        ("to_email", "josé@example.org"),
        ("from_address", "Digest <digest@bücher.example>"),
        ("reply_to", "Desk <josé@example.org>"),
    ],
)
def test_non_ascii_address_is_refused_clearly(field: str, address: str) -> None:
    """A row stored before addresses were checked must fail its message, not crash encoding."""
    with pytest.raises(UnmailableAddress, match="is not ASCII"):
        build(**{field: address})


def test_non_ascii_subject_and_name_round_trip() -> None:
    subject = "Wissenschaft: Grüße aus Köln – 東京 " + "und mehr " * 10
    data = build(to_name="Zoë Ñúñez “Q”", rendered=Rendered(subject, HTML, TEXT))
    msg = parse(data)
    assert msg["Subject"] == subject.strip()
    assert msg["To"].addresses[0].display_name == "Zoë Ñúñez “Q”"
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_reply_to_and_extra_headers() -> None:
    msg = parse(
        build(
            reply_to="Editors <editors@news.example.org>",
            extra_headers={"X-Edition": "daily:2026-11-24"},
        )
    )
    assert msg["Reply-To"] == "Editors <editors@news.example.org>"
    assert msg["X-Edition"] == "daily:2026-11-24"
    with pytest.raises(ValueError):
        build(extra_headers={"Bcc": "x@y.z"})
    with pytest.raises(ValueError):
        build(extra_headers={"X-Bad\r\nBcc": "x"})


def test_reply_to_is_one_mailbox() -> None:
    """A list would lose every address after the first without a word: refused."""
    msg = parse(build(reply_to='"Smith, Jo" <jo@news.example.org>'))
    assert msg["Reply-To"].addresses[0].addr_spec == "jo@news.example.org"
    assert msg["Reply-To"].addresses[0].display_name == "Smith, Jo"
    for bad in ("a@news.example.org, b@news.example.org", "@news.example.org", "x y@z.org"):
        with pytest.raises(UnmailableAddress):
            build(reply_to=bad)


def test_same_input_same_bytes() -> None:
    assert build() == build()


def test_naive_date_refused() -> None:
    with pytest.raises(ValueError):
        build(date=datetime(2026, 11, 24, 8, 0))


def test_make_message_id() -> None:
    mid = make_message_id("daily:2026-11-24:42", "news.example.org")
    assert mid.startswith("<") and mid.endswith("@news.example.org>")
    assert mid == make_message_id("daily:2026-11-24:42", "news.example.org")
    assert mid != make_message_id("daily:2026-11-24:43", "news.example.org")
    with pytest.raises(ValueError):
        make_message_id("x", "bad domain>\r\n")


def test_headers_folded_here_read_back_as_written() -> None:
    """Folded and encoded headers decode (RFC 2047, as mail clients do) to exactly the input."""
    import random
    from email.header import decode_header, make_header

    rng = random.Random(7)
    pieces = [
        "Science", "Digest:", "a", "very-long-hyphenated-word", "O'Brien", "Dr.", "x" * 70,
        "Zoë", '"quoted"', "(comment)", "<b>", "a,b", "Ann", "Smith", "=?utf-8?q?no?=", "東京",
    ]  # fmt: skip
    for _ in range(300):
        subject = " ".join(rng.choices(pieces, k=rng.randint(1, 14)))
        name = " ".join(rng.choices(pieces, k=rng.randint(0, 4)))
        data = build(rendered=Rendered(subject, HTML, TEXT), to_name=name)
        parse(data)  # strict parsing accepts it
        head = data.split(b"\r\n\r\n")[0].decode("ascii")
        fields = dict(line.split(": ", 1) for line in head.replace("\r\n ", " ").split("\r\n"))
        assert str(make_header(decode_header(fields["Subject"]))) == subject
        to = fields["To"]
        if name:
            assert to.endswith(" <ann@example.org>")
            shown = str(make_header(decode_header(to.removesuffix(" <ann@example.org>"))))
            if name.isascii() and "=?" not in name:  # plain, possibly a quoted-string
                shown = email.utils.parseaddr(to)[0]
            assert shown == name
        for line in head.split("\r\n"):  # long only where a single word (a URL) needs it
            assert len(line) <= 78 or " " not in line.split(": ", 1)[-1].strip(), line


def test_quoted_printable_by_line_equals_the_whole_text() -> None:
    import binascii
    import random

    from digest.compose import _qp

    rng = random.Random(11)
    alphabet = ["a", " ", "\t", "=", ".", "é", "東", "\n", "\r\n", "x" * 90, "  \n", "=\n", "\r"]
    for _ in range(500):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        lines = text.encode("utf-8").splitlines()
        source = b"\r\n".join(lines) + b"\r\n"
        whole = binascii.b2a_qp(source, istext=True)
        ours = _qp(text)
        assert _qp(text) == ours  # from the cache too
        assert binascii.a2b_qp(ours) == binascii.a2b_qp(whole)
        encoded_lines = ours.split(b"\r\n")
        assert all(len(line) <= 76 for line in encoded_lines)
        # no line opens with a dot, so SMTP needs no dot-stuffing; otherwise exactly b2a_qp
        assert not any(line.startswith(b".") for line in encoded_lines)
        if not any(line.startswith(b".") for line in whole.split(b"\r\n")):
            assert ours == whole


def test_quoted_printable_writes_a_dot_opening_a_line_as_2e() -> None:
    from digest.compose import _qp

    css = ".mj-column-per-100 { width:100% !important; }\n" + "x" * 75 + ".y\n.\n"
    encoded = _qp(css)
    assert encoded.startswith(b"=2Emj-column-per-100 { width:100% !important; }\r\n")
    assert b"\r\n=2Ey\r\n" in encoded and encoded.endswith(b"\r\n=2E\r\n")
    assert b"\n." not in encoded


def test_composed_message_has_no_line_starting_with_a_dot() -> None:
    """What lets the SMTP transport skip dot-stuffing: checked on dots in every place."""
    from digest.content import DotFree

    dotted = Rendered(
        ".hidden subject",
        "<style>\n.dg-card { color: red; }\n</style>\n.\n" + "x" * 75 + ".y\n..two\n",
        ".first\n.\n" + "w" * 74 + ". tail\n" + ". " * 60 + "\n",
        html_parts=(Personal("<p>\n.a"), ".b\n.c", Personal("\n.\n")),
        text_parts=(".t", Personal("\n.u\n"), ".v\n"),
    )
    data = build(rendered=dotted, to_name=".Ann", extra_headers={"X-Note": ". " * 50})
    assert isinstance(data, DotFree)
    assert not data.startswith(b".") and b"\n." not in data
    msg = parse(data)
    parts = list(msg.iter_parts())
    assert parts[0].get_content().replace("\r\n", "\n") == "".join(dotted.text_parts)
    assert parts[1].get_content().replace("\r\n", "\n") == "".join(dotted.html_parts)


def test_quoted_printable_from_pieces_equals_the_whole_text() -> None:
    import random

    from digest.compose import _qp, _qp_pieces
    from digest.content import Personal

    rng = random.Random(12)
    alphabet = ["a", " ", "\t", "=", ".", "é", "\n", "\n\n", "x" * 90, "  \n", "<p>"]
    shared = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(20)]
    for _ in range(500):
        pieces = tuple(
            rng.choice(shared)
            if rng.random() < 0.6
            else Personal("".join(rng.choices(alphabet, k=9)))  # a member's own: not kept
            if rng.random() < 0.5
            else "".join(rng.choices(alphabet, k=9))
            for _ in range(rng.randint(0, 8))
        )
        assert _qp_pieces(pieces) == _qp("".join(pieces)), pieces
    assert _qp_pieces(("a\rb", "c")) == _qp("a\rbc")


def test_encoded_display_names_are_what_the_email_package_writes() -> None:
    """The one-word fast path against ``email.header.Header``, on random names."""
    import random
    from email.header import Header

    from digest.compose import _encoded_words

    rng = random.Random(2047)
    alphabet = ["a", " ", "é", "ü", "東", "Ω", "-", "_", "=", "?", "'", "x" * 10, "Zoë"]
    for _ in range(3000):
        value = "".join(rng.choices(alphabet, k=rng.randint(1, 12))).strip() or "é"
        for name in ("To", "From", "Reply-To", "List-Id"):
            expected = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
            assert _encoded_words(name, value) == expected, (name, value)


def test_date_header_keeps_each_zone_of_one_instant() -> None:
    from datetime import timedelta, timezone

    from digest.compose import _date

    utc = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == paris  # one instant: a cache keyed on the datetime alone would mix them
    assert _date(utc, utc.utcoffset()).endswith("+0000")
    assert _date(paris, paris.utcoffset()) == "Tue, 24 Nov 2026 09:00:00 +0100"


def test_quoted_printable_lines_stay_within_76_columns_without_leading_dots() -> None:
    """Random lines, dots and trailing white space at every column: each encoded line fits
    76 columns (b2a_qp alone lets a last line ending in white space reach 77), none opens
    with a dot, and it decodes to the source."""
    import binascii
    import quopri
    import random

    from digest.compose import _qp_line

    assert len(binascii.b2a_qp(b" " + b"x" * 70 + b"=\t\r\n", istext=True)) == 77 + 2
    rng = random.Random(7)
    alphabet = [b"a", b" ", b"\t", b"=", b".", "é".encode(), b"x" * 70, b"..", b". ", b"\xff"]
    dotted = 0
    for _ in range(5000):
        line = b"".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        encoded = _qp_line(line)
        rows = encoded.split(b"\r\n")
        assert rows[-1] == b"" and all(len(row) <= 76 for row in rows), encoded
        assert not any(row.startswith(b".") for row in rows), encoded
        assert quopri.decodestring(encoded) == line + b"\r\n"
        dotted += b"=2E" in encoded
    assert dotted > 100  # the dot rule was exercised


def test_one_click_only_with_an_https_unsubscribe_link() -> None:
    """RFC 8058: One-Click needs https; an http link leaves List-Unsubscribe the mailto alone."""
    msg = parse(build(unsubscribe_url="http://news.example.org/unsubscribe/t0k3n"))
    assert msg["List-Unsubscribe"] == f"<{MAILTO}>"
    assert msg["List-Unsubscribe-Post"] is None
    msg = parse(build(unsubscribe_url="HTTPS://news.example.org/unsubscribe/t0k3n"))
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_feedback_id_for_gmails_feedback_loop() -> None:
    from digest.compose import feedback_id

    value = feedback_id("daily:2026-11-24", "digest.news.example.org", "news.example.org")
    assert value == "daily-2026-11-24:digest.news.example.org:digest:news.example.org"
    assert feedback_id("x\r\nInjected: yes", "a b", "") == "x-Injected-yes:a-b:digest:none"
    msg = parse(build(feedback=value))
    assert msg["Feedback-ID"] == value
    assert parse(build())["Feedback-ID"] is None
    with pytest.raises(ValueError, match="not allowed"):
        build(extra_headers={"Feedback-ID": "forged"})
