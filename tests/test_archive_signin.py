"""One-time sign-in links: mailed to members only (real SMTP), used once, for 20 minutes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from digest.archive.signin import LINK_MINUTES, SignIn, SignInRefused
from digest.editions import Editions
from digest.mailer import make_transport
from digest.members import parse_changes
from digest.members.store import add_member, set_status
from digest.outbound import Outbound
from digest.settings import Settings
from tests.archive_helpers import NOW, Clock, seed_archive
from tests.conftest import TEST_SECRET, SMTPServer


@pytest.fixture
def links(engine: Engine, settings: Settings) -> tuple[SignIn, Clock]:
    seed_archive(engine)
    with Session(engine) as session:
        record, _ = parse_changes("ann@example.org", "test", follows=["Keio University"])
        add_member(session, record, NOW)
        session.commit()
    clock = Clock()
    outbound = Outbound(Editions(settings), lambda: make_transport(settings))
    return SignIn(engine, outbound, TEST_SECRET, settings.base_url, clock), clock


def token_from(smtp: SMTPServer, to: str) -> str:
    (received,) = smtp.handler.to(to)
    text = received.data.decode("utf-8", "replace").replace("=\r\n", "").replace("=3D", "=")
    found = re.findall(r"https://news\.example\.org/signin/([A-Za-z0-9_.\-]+)", text)
    assert found
    return found[0]


def test_a_member_gets_a_link_that_works_once(
    links: tuple[SignIn, Clock], smtp_server: SMTPServer
) -> None:
    signin, _ = links
    assert signin.request("ANN@example.org", "/articles/1") is True
    message = smtp_server.handler.to("ann@example.org")[0].message
    assert message["Subject"] == "Your link to sign in to Science Digest"
    assert f"for {LINK_MINUTES} minutes" in message.get_body(("plain",)).get_content()
    token = token_from(smtp_server, "ann@example.org")
    status = signin.check(token)
    assert signin.check(token) == status  # looking changes nothing
    used = signin.use(token)
    assert used.member_id == status.member_id and used.next_path == "/articles/1"
    with pytest.raises(SignInRefused) as refused:
        signin.use(token)
    assert refused.value.reason == "used"


def test_a_link_expires_after_twenty_minutes(
    links: tuple[SignIn, Clock], smtp_server: SMTPServer
) -> None:
    signin, clock = links
    signin.request("ann@example.org")
    token = token_from(smtp_server, "ann@example.org")
    clock.now = NOW + timedelta(minutes=LINK_MINUTES, seconds=1)
    with pytest.raises(SignInRefused) as refused:
        signin.use(token)
    assert refused.value.reason == "expired"


def test_strangers_get_nothing_and_forged_links_nothing(
    links: tuple[SignIn, Clock], smtp_server: SMTPServer, engine: Engine
) -> None:
    signin, _ = links
    assert signin.request("stranger@example.org") is False
    assert signin.request("not an address\r\nBcc: x@example.org") is False
    assert smtp_server.messages == []
    for forged in ("", "x", "eyJuIjoiYSJ9.forged", "a" * 5000):
        with pytest.raises(SignInRefused) as refused:
            signin.check(forged)
        assert refused.value.reason == "invalid"
    signin.request("ann@example.org")
    token = token_from(smtp_server, "ann@example.org")
    with Session(engine) as session:  # unsubscribed since: the link signs nobody in
        set_status(session, "ann@example.org", "unsubscribed", "test", NOW)
        session.commit()
    with pytest.raises(SignInRefused):
        signin.use(token)
    assert signin.request("ann@example.org") is False
