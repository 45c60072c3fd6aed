"""The "View in browser" page: the delivery's edition from the ledger, nothing personal in it,
and a 404 page for links that are forged, altered, expired or lead to nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy

import lxml.html
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from digest.clock import fixed_clock
from digest.db import session_scope
from digest.editions import Editions
from digest.mailer import SMTPTransport
from digest.members import remove_member
from digest.plan import plan
from digest.send import send_due
from digest.settings import Settings
from digest.tokens import TokenSigner
from digest.web import create_app
from tests.conftest import TEST_SECRET, SMTPServer
from tests.test_web import NOW, Clock, seed


def send_all(engine: Engine, settings: Settings) -> None:
    plan(engine, settings, NOW, force=True)
    report = send_due(
        engine,
        settings,
        lambda: SMTPTransport.from_settings(settings),
        Editions(settings),
        fixed_clock(NOW),
    )
    assert report.sent == 2, report


def html_of(data: bytes) -> str:
    msg = message_from_bytes(data, policy=policy.default)
    return msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


def view_link(page: str) -> str:
    doc = lxml.html.document_fromstring(page)
    (link,) = doc.xpath("//a[normalize-space()='View in browser']/@href")
    return str(link)


def headlines(page: str) -> list[str]:
    doc = lxml.html.document_fromstring(page)
    return [" ".join(h.text_content().split()) for h in doc.xpath("//h3")]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(engine: Engine, settings: Settings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(settings, engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as test_client:
        yield test_client


def test_view_in_browser_shows_the_edition_and_nothing_personal(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, client: TestClient
) -> None:
    seed(engine)
    send_all(engine, settings)
    (ada,) = smtp_server.handler.to("ada@example.org")
    emailed = html_of(ada.data)
    url = view_link(emailed)
    assert url.startswith("https://news.example.org/view/")
    assert ("View in browser: " + url).encode() in ada.data.replace(b"=\r\n", b"")  # text too
    response = client.get(url.removeprefix("https://news.example.org"))
    assert response.status_code == 200
    page = response.text
    assert headlines(page) == headlines(emailed) == ["Stem cells repair a heart"]
    assert "Stem cells repair a heart: the first key point." in page
    for personal in ("ada@example.org", "Hello Ada", "/unsubscribe/", "/preferences/", "mailto:"):
        assert personal not in page, personal
    assert "View in browser" not in page
    doc = lxml.html.document_fromstring(page)
    assert doc.xpath("//a[normalize-space()='Subscribe']/@href") == [
        "https://news.example.org/subscribe"
    ]
    # the email's own styles may apply; nothing may load or run
    csp = response.headers["content-security-policy"]
    assert "style-src 'unsafe-inline'" in csp and "script-src" not in csp
    assert "default-src 'none'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"  # the token stays here
    # each delivery has its own link
    (bob,) = smtp_server.handler.to("bob@example.org")
    assert view_link(html_of(bob.data)) != url
    assert headlines(client.get(view_link(html_of(bob.data))).text) == ["A new rover lands on Mars"]


def test_forged_altered_expired_and_vanished_links_get_a_clear_404(
    engine: Engine,
    settings: Settings,
    smtp_server: SMTPServer,
    client: TestClient,
    clock: Clock,
) -> None:
    seed(engine)
    send_all(engine, settings)
    (ada,) = smtp_server.handler.to("ada@example.org")
    path = view_link(html_of(ada.data)).removeprefix("https://news.example.org")
    token = path.removeprefix("/view/")
    signer = TokenSigner(TEST_SECRET)
    delivery_id = signer.verify_view(token, NOW)
    forged = TokenSigner("someone-elses-secret-0123456789ab").make_view(delivery_id, NOW)
    at = len(token) - 5  # inside the signature (a last base64 character may carry no bits)
    altered = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    other_purpose = signer.make(1, "ada@example.org", "unsubscribe", NOW)
    nowhere = signer.make_view(999_999, NOW)
    for bad in (forged, altered, other_purpose, nowhere, "x", token[:12]):
        response = client.get(f"/view/{bad}")
        assert response.status_code == 404, bad
        assert "This copy is not available" in response.text
        assert "Stem cells repair a heart" not in response.text
    clock.now = NOW + timedelta(days=settings.view_link_days + 1)
    expired = client.get(path)
    assert expired.status_code == 404 and "has expired" in expired.text
    clock.now = NOW + timedelta(days=settings.view_link_days - 1)
    assert client.get(path).status_code == 200
    with session_scope(engine) as session:  # a member who asked to be forgotten
        remove_member(session, "ada@example.org", NOW, forget=True)
    assert client.get(path).status_code == 404


def test_headlines_match_for_a_digest_over_several_topics(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, client: TestClient
) -> None:
    seed(engine)
    from digest.members import MemberRecord, add_member

    with session_scope(engine) as session:
        record = MemberRecord("cy@example.org", "Cy", ("Space", "Nervous System", "Stem Cells"))
        add_member(session, record, NOW - timedelta(days=2))
    plan(engine, settings, NOW, force=True)
    send_due(
        engine,
        settings,
        lambda: SMTPTransport.from_settings(settings),
        Editions(settings),
        fixed_clock(NOW),
    )
    (cy,) = smtp_server.handler.to("cy@example.org")
    emailed = html_of(cy.data)
    page = client.get(view_link(emailed)).text
    assert len(headlines(emailed)) == 3 and headlines(page) == headlines(emailed)
    sections = re.findall(r"<h2[^>]*>([^<]+)</h2>", emailed)
    assert re.findall(r"<h2[^>]*>([^<]+)</h2>", page) == sections


def test_the_web_copy_groups_a_followed_resource_as_the_email_did(
    engine: Engine, settings: Settings, smtp_server: SMTPServer, client: TestClient
) -> None:
    from sqlmodel import Session

    from digest.members import parse_changes
    from digest.members.store import add_member
    from tests.archive_helpers import seed_archive

    seed_archive(engine)
    with Session(engine) as session:
        record, _ = parse_changes("kei@example.org", "test", follows=["Keio University"])
        add_member(session, record, NOW - timedelta(days=1))
        session.commit()
    plan(engine, settings, NOW, force=True)
    report = send_due(
        engine,
        settings,
        lambda: SMTPTransport.from_settings(settings),
        Editions(settings),
        fixed_clock(NOW),
    )
    assert report.sent == 1, report
    (mail,) = smtp_server.handler.to("kei@example.org")
    emailed = html_of(mail.data)
    assert "Because you follow Keio University" in emailed
    page = client.get(view_link(emailed).removeprefix("https://news.example.org"))
    assert page.status_code == 200
    assert "Because you follow Keio University" in page.text
    assert headlines(page.text) == headlines(emailed)
