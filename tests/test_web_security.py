"""Editors' sign-in, sessions and throttles, over HTTP against a real store; CSRF tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.routing import Route
from starlette.testclient import TestClient

from digest import editors
from digest.db import session_scope
from digest.editors import audit
from digest.settings import Settings
from digest.web import create_app
from digest.web.security import CSRF, CSRFError, LoginThrottle, client_network
from tests.conftest import SMTPServer
from tests.newsroom_helpers import ANN, ANN_PW, BEN, BEN_PW, add_editors, csrf_of, sign_in

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
SITE = "https://news.example.org"


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def app_for(settings: Settings, engine: Engine, clock: Clock, **changes: object):  # type: ignore[no-untyped-def]
    return create_app(settings.replace(**changes), engine, clock=clock)


def test_two_editors_one_logs_out_a_copied_cookie_dies_the_other_stays(
    engine: Engine, settings: Settings
) -> None:
    clock = Clock()
    add_editors(engine, NOW)
    app = app_for(settings, engine, clock)
    with TestClient(app, base_url=SITE) as ann, TestClient(app, base_url=SITE) as ben:
        assert sign_in(ann, ANN, ANN_PW) == 303
        assert sign_in(ben, BEN, BEN_PW) == 303
        assert sign_in(ann, ANN, BEN_PW) == 401  # her colleague's password is not hers
        copied = ann.cookies.get("digest_editor")
        assert copied
        page = ann.get("/editor")
        assert page.status_code == 200 and ANN in page.text
        answer = ann.post("/editor/logout", data={"csrf_token": csrf_of(page.text)})
        assert answer.status_code == 200 and "/editor/login" in str(answer.url)
        with TestClient(app, base_url=SITE) as thief:
            thief.cookies.set("digest_editor", copied, path="/editor")
            assert thief.get("/editor", follow_redirects=False).status_code == 303
        assert ben.get("/editor", follow_redirects=False).status_code == 200
    with Session(engine) as session:
        actions = [(e.actor, e.action) for e in audit.recent(session)]
    assert (ANN, "sign-out") in actions and (BEN, "sign-in") in actions


def test_ten_wrong_passwords_lock_that_account_only_for_a_while(
    engine: Engine, settings: Settings
) -> None:
    clock = Clock()
    add_editors(engine, NOW)
    app = app_for(settings, engine, clock, editor_lockout_minutes=15)
    with TestClient(app, base_url=SITE) as client:
        for _ in range(9):
            assert sign_in(client, ANN, "not her password at all") == 401
        assert sign_in(client, ANN, "not her password at all") == 429  # the tenth locks
        assert sign_in(client, ANN, ANN_PW) == 429  # locked, even with the right password
        assert sign_in(client, BEN, BEN_PW) == 303  # same client, other account: fine
        clock.now += timedelta(minutes=14)
        assert sign_in(client, ANN, ANN_PW) == 429
        clock.now += timedelta(minutes=2)
        assert sign_in(client, ANN, ANN_PW) == 303


def test_other_spellings_of_one_address_count_against_the_same_account(
    engine: Engine, settings: Settings
) -> None:
    # each of these signs in as Ann (the address is normalised before it is looked up), so
    # each must spend Ann's ten tries, or the lock is only a matter of spelling
    spellings = [
        "ann@news.example.org.",
        "ann@NEWS.example.org",
        "ann@\uff4eews.example.org",  # a fullwidth n
        "ann@news.\uff45xample.org",  # a fullwidth e
        "ann@news.example.org",
    ]
    clock = Clock()
    add_editors(engine, NOW)
    app = app_for(settings, engine, clock)
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, spellings[0], ANN_PW) == 303
        answers = [sign_in(client, spellings[n % 5], "a guess") for n in range(10)]
        assert answers == [401] * 9 + [429]
        assert sign_in(client, ANN, ANN_PW) == 429
        assert sign_in(client, BEN, BEN_PW) == 303


def test_failures_spread_over_minutes_do_not_lock(engine: Engine, settings: Settings) -> None:
    clock = Clock()
    add_editors(engine, NOW)
    app = app_for(settings, engine, clock)
    with TestClient(app, base_url=SITE) as client:
        for _ in range(12):
            assert sign_in(client, ANN, "a typo of a password") == 401
            clock.now += timedelta(seconds=10)
        assert sign_in(client, ANN, ANN_PW) == 303


def test_bootstrap_password_makes_the_first_account_and_then_signs_nobody_in(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    app = app_for(settings, engine, clock, editor_password="bootstrap-secret")
    assert "only a bootstrap" in caplog.text
    with TestClient(app, base_url=SITE) as client:
        page = client.get("/editor/login")
        assert "No editor account exists yet" in page.text
        assert sign_in(client, "First@News.Example.org", "wrong") == 401
        assert sign_in(client, "First@News.Example.org", "bootstrap-secret") == 303
        assert "made it the first editor account" in caplog.text
    with Session(engine) as session:
        assert [e.email for e in editors.list_editors(session)] == ["first@news.example.org"]
    with TestClient(app, base_url=SITE) as other:
        assert "No editor account exists yet" not in other.get("/editor/login").text
        assert sign_in(other, "second@news.example.org", "bootstrap-secret") == 401
        assert sign_in(other, "first@news.example.org", "bootstrap-secret") == 303


def test_without_accounts_or_bootstrap_the_newsroom_is_off(
    engine: Engine, settings: Settings
) -> None:
    app = app_for(settings, engine, Clock(), editor_password="")
    with TestClient(app, base_url=SITE) as client:
        assert client.get("/editor/login").status_code == 503
    add_editors(engine, NOW)
    with TestClient(app, base_url=SITE) as client:
        assert client.get("/editor/login").status_code == 200


def test_removing_an_editor_ends_every_session(engine: Engine, settings: Settings) -> None:
    add_editors(engine, NOW)
    app = app_for(settings, engine, Clock())
    with TestClient(app, base_url=SITE) as one, TestClient(app, base_url=SITE) as two:
        assert sign_in(one, ANN, ANN_PW) == 303 and sign_in(two, ANN, ANN_PW) == 303
        with session_scope(engine) as session:
            assert editors.remove_editor(session, ANN) == 2
        for client in (one, two):
            assert client.get("/editor", follow_redirects=False).status_code == 303


def test_sessions_expire(engine: Engine, settings: Settings) -> None:
    clock = Clock()
    add_editors(engine, NOW)
    app = app_for(settings, engine, clock, editor_session_hours=2)
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, ANN, ANN_PW) == 303
        clock.now += timedelta(hours=1, minutes=59)
        assert client.get("/editor", follow_redirects=False).status_code == 200
        clock.now += timedelta(minutes=2)
        assert client.get("/editor", follow_redirects=False).status_code == 303


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_editor_page_redirects_to_sign_in_and_every_post_checks_csrf(
    engine: Engine, settings: Settings
) -> None:
    add_editors(engine, NOW)
    app = app_for(settings, engine, Clock())
    routes = [
        r
        for r in app.routes
        if isinstance(r, Route)
        and r.path.startswith("/editor")
        and not r.path.startswith("/editor/login")
    ]
    gets = [r.path for r in routes if "GET" in (r.methods or ())]
    posts = [r.path for r in routes if "POST" in (r.methods or ())]
    assert "/editor" in gets and "/editor/audit" in gets and "/editor/logout" in posts
    with TestClient(app, base_url=SITE) as client:
        for path in gets:
            answer = client.get(_concrete(path), follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/editor/login?next="), path
        for path in posts:
            assert client.post(_concrete(path), data={}).status_code == 401, path
        assert sign_in(client, ANN, ANN_PW) == 303
        for path in posts:
            answer = client.post(_concrete(path), data={"csrf_token": "forged"})
            assert answer.status_code == 403, path
            answer = client.post(_concrete(path), data={})
            assert answer.status_code == 403, path
        assert client.get("/editor", follow_redirects=False).status_code == 200


def test_login_form_needs_its_csrf_token(engine: Engine, settings: Settings) -> None:
    add_editors(engine, NOW)
    app = app_for(settings, engine, Clock())
    with TestClient(app, base_url=SITE) as client:
        client.get("/editor/login")
        answer = client.post("/editor/login", data={"email": ANN, "password": ANN_PW})
        assert answer.status_code == 403


def test_throttle_locks_after_the_limit_within_the_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(3, 60, 600, lambda: now[0])
    assert throttle.fail("a") is None and throttle.fail("a") is None
    assert throttle.fail("a") == 600
    assert throttle.locked_for("a") == 600 and throttle.locked_for("b") is None
    now[0] = 601
    assert throttle.locked_for("a") is None
    throttle.fail("a")
    now[0] = 700
    throttle.fail("a")
    assert throttle.fail("a") is None  # the first of these is out of the window


def test_client_networks() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3::4") == "2001:db8:1::/56"
    assert client_network("testclient") == "testclient"


def test_csrf_tokens_are_bound() -> None:
    csrf = CSRF("k")
    csrf.check("editor:a", csrf.token("editor:a"))
    with pytest.raises(CSRFError):
        csrf.check("editor:b", csrf.token("editor:a"))
    with pytest.raises(CSRFError):
        csrf.check("editor:a", "")


LINK_RE = re.compile(r"https://news\.example\.org(/editor/login/link/[^\s\"<>]+)")


def _link_from(smtp: SMTPServer, to: str, count: int = 1) -> str:
    mails = smtp.handler.to(to)
    assert len(mails) == count
    text = mails[-1].data.decode().replace("=\r\n", "").replace("=3D", "=")
    match = LINK_RE.search(text)
    assert match
    return match.group(1)


def test_one_time_sign_in_link(engine: Engine, settings: Settings, smtp_server: SMTPServer) -> None:
    clock = Clock()
    add_editors(engine, NOW)
    app = app_for(settings, engine, clock)
    with TestClient(app, base_url=SITE) as client:
        token = csrf_of(client.get("/editor/login").text)
        asked = client.post("/editor/login/link", data={"email": ANN, "csrf_token": token})
        assert asked.status_code == 200 and "If that address belongs to an editor" in asked.text
        stranger = client.post(
            "/editor/login/link", data={"email": "x@example.org", "csrf_token": token}
        )
        assert stranger.status_code == 200 and "Check your mail" in stranger.text
        assert smtp_server.handler.to("x@example.org") == []
        path = _link_from(smtp_server, ANN)
        page = client.get(path)  # a scanner opening the link spends nothing
        assert page.status_code == 200 and "Sign in" in page.text
        assert client.get("/editor", follow_redirects=False).status_code == 303
        used = client.post(path, data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
        assert used.status_code == 303 and used.headers["location"] == "/editor"
        assert client.get("/editor", follow_redirects=False).status_code == 200
    with TestClient(app, base_url=SITE) as other:
        page = other.get(path)
        again = other.post(path, data={"csrf_token": csrf_of(page.text)})
        assert again.status_code == 400  # once only
        other.post(
            "/editor/login/link",
            data={"email": ANN, "csrf_token": csrf_of(other.get("/editor/login").text)},
        )
        late = _link_from(smtp_server, ANN, count=2)
        clock.now += timedelta(minutes=16)
        page = other.get(late)
        assert other.post(late, data={"csrf_token": csrf_of(page.text)}).status_code == 400
        forged = late[:-4] + "AAAA"
        page = other.get(forged)
        assert other.post(forged, data={"csrf_token": csrf_of(page.text)}).status_code == 400


def test_sign_in_links_are_limited_per_address(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    add_editors(engine, NOW)
    app = app_for(settings, engine, Clock())
    with TestClient(app, base_url=SITE) as client:
        token = csrf_of(client.get("/editor/login").text)
        answers = [
            client.post("/editor/login/link", data={"email": ANN, "csrf_token": token})
            for _ in range(6)
        ]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert len(smtp_server.handler.to(ANN)) == 5


def test_asking_for_a_link_answers_before_the_mail_is_sent(
    engine: Engine, settings: Settings
) -> None:
    # an answer that waits for the mail server would take longer for an editor's address
    # than for a stranger's: the timing alone would tell who the editors are
    import asyncio
    import threading

    import httpx
    from aiosmtpd.controller import Controller

    from tests.archive_helpers import serve
    from tests.conftest import free_port

    release = threading.Event()
    received: list[str] = []

    class Holding:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
            received.extend(envelope.rcpt_tos)  # type: ignore[attr-defined]
            return "250 OK"

    port = free_port()
    smtp = Controller(Holding(), hostname="127.0.0.1", port=port)
    smtp.start()
    add_editors(engine, NOW)
    try:
        with serve(engine, settings.replace(smtp_port=port)) as (base, _clock):
            with httpx.Client(base_url=base, timeout=20) as client:
                token = csrf_of(client.get("/editor/login").text)
                asked = client.post("/editor/login/link", data={"email": ANN, "csrf_token": token})
                assert asked.status_code == 200 and "Check your mail" in asked.text
                assert received == []  # answered while the mail server still holds the mail
                release.set()
                for _ in range(600):
                    if received:
                        break
                    threading.Event().wait(0.05)
                assert received == [ANN]
    finally:
        release.set()
        smtp.stop()
