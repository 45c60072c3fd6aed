"""The web app over HTTP (Starlette's TestClient), on SQLite and PostgreSQL.

Members: subscribe with double opt-in, confirm, preferences, RFC 8058 unsubscribe; links are
refused when forged, altered, expired or for another member; forms without their CSRF token
are refused; subscribe is rate-limited. Editors: nothing without a login; previews and test
copies that are never deliveries. Operators: /healthz and /metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session, select
from starlette.routing import Route
from starlette.testclient import TestClient

from digest.db import session_scope
from digest.ingest.records import ArticleRecord
from digest.ingest.store import upsert_articles
from digest.mailer import SMTPTransport
from digest.members import MemberRecord, add_member, get_member, remove_member, set_status
from digest.models import Delivery, Subscriber
from digest.plan import plan
from digest.settings import Settings
from digest.tokens import TokenSigner
from digest.web import create_app
from digest.web.ops import record_tick
from digest.web.security import RateLimiter
from tests.conftest import CLI, SMTPServer, free_port

NOW = datetime(2025, 3, 25, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
LINK_RE = re.compile(r"https://news\.example\.org(/[A-Za-z]+/[^\s\"<>]+)")


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def seed(engine: Engine) -> dict[str, int]:
    """Three topics with one article each, and two active members; returns member ids."""
    records = [
        ArticleRecord(
            url=f"https://archive.example.org/{slug}",
            title=title,
            published_at=NOW - timedelta(hours=20),
            key_points=(f"{title}: the first key point.",),
            topics=(topic,),
        )
        for slug, title, topic in (
            ("cells", "Stem cells repair a heart", "Stem Cells"),
            ("mars", "A new rover lands on Mars", "Space"),
            ("nerves", "Nerves regrow in mice", "Nervous System"),
        )
    ]
    ids: dict[str, int] = {}
    with session_scope(engine) as session:
        upsert_articles(session, records, NOW - timedelta(hours=2))
        for email, topics in (("ada@example.org", ["Stem Cells"]), ("bob@example.org", ["Space"])):
            record = MemberRecord(email, email[:3].title(), tuple(topics))
            result = add_member(session, record, NOW - timedelta(days=2))
            ids[email] = result.member.id
    return ids


URLENCODED = "application/x-www-form-urlencoded"


def web_settings(settings: Settings, **changes: object) -> Settings:
    return settings.replace(**{"editor_password": PASSWORD, **changes})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(engine: Engine, settings: Settings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(web_settings(settings), engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as test_client:
        yield test_client


@pytest.fixture
def signer() -> TokenSigner:
    from tests.conftest import TEST_SECRET

    return TokenSigner(TEST_SECRET)


def status_of(engine: Engine, email: str) -> str:
    with Session(engine) as session:
        member = get_member(session, email)
        assert member is not None
        return member.status


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def links_in(received: bytes) -> list[str]:
    text = received.decode("utf-8", "replace").replace("=\r\n", "")
    return [m.replace("=3D", "=") for m in LINK_RE.findall(text)]


def member_topics(engine: Engine, email: str) -> set[str]:
    from digest import catalog

    with Session(engine) as session:
        member = get_member(session, email)
        assert member is not None
        return set(catalog.member_views(session, [member])[0].topics)


# ---------------------------------------------------------------- unsubscribe (RFC 8058)


def test_one_click_post_unsubscribes_and_get_does_not(
    engine: Engine, client: TestClient, signer: TokenSigner
) -> None:
    ids = seed(engine)
    token = signer.make(ids["ada@example.org"], "ada@example.org", "unsubscribe", NOW)

    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert status_of(engine, "ada@example.org") == "active"  # a GET changes nothing

    fresh = TestClient(client.app, base_url="https://news.example.org")  # no cookies at all
    for _ in range(2):  # idempotent
        answer = fresh.post(
            f"/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200, answer.text
        assert "set-cookie" not in answer.headers
        assert status_of(engine, "ada@example.org") == "unsubscribed"
    assert status_of(engine, "bob@example.org") == "active"
    assert "You are unsubscribed" in client.get(f"/unsubscribe/{token}").text


def test_unsubscribe_post_without_one_click_body_changes_nothing(
    engine: Engine, client: TestClient, signer: TokenSigner
) -> None:
    ids = seed(engine)
    token = signer.make(ids["ada@example.org"], "ada@example.org", "unsubscribe", NOW)
    assert client.post(f"/unsubscribe/{token}", data={}).status_code == 400
    assert status_of(engine, "ada@example.org") == "active"


def test_unsubscribe_link_never_expires_and_bounce_stays_bounce(
    engine: Engine, client: TestClient, signer: TokenSigner, clock: Clock
) -> None:
    ids = seed(engine)
    token = signer.make(ids["bob@example.org"], "bob@example.org", "unsubscribe", NOW)
    with session_scope(engine) as session:
        set_status(session, "bob@example.org", "bounced", "550", NOW)
    clock.now = NOW + timedelta(days=3650)
    answer = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert status_of(engine, "bob@example.org") == "bounced"


# ---------------------------------------------------------------- bad tokens


def test_forged_altered_expired_and_cross_member_tokens_get_a_400_page(
    engine: Engine, client: TestClient, signer: TokenSigner, clock: Clock
) -> None:
    ids = seed(engine)
    ada, bob = ids["ada@example.org"], ids["bob@example.org"]
    good = signer.make(ada, "ada@example.org", "preferences", NOW)
    forged = TokenSigner("another-secret-key-0123456789").make(
        ada, "ada@example.org", "preferences", NOW
    )
    altered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    cross = signer.make(bob, "ada@example.org", "preferences", NOW)  # bob's id, ada's address
    wrong_purpose = signer.make(ada, "ada@example.org", "unsubscribe", NOW)
    for token in (forged, altered, cross, wrong_purpose, "not-a-token"):
        answer = client.get(f"/preferences/{token}")
        assert answer.status_code == 400, token
        assert "This link does not work" in answer.text
        assert "Traceback" not in answer.text
    for path in ("/unsubscribe/", "/confirm/"):
        assert client.get(path + forged).status_code == 400
        assert client.post(path + forged, data={"List-Unsubscribe": "One-Click"}).status_code in (
            400,
            403,
        )
    assert status_of(engine, "ada@example.org") == "active"

    assert client.get(f"/preferences/{good}").status_code == 200
    clock.now = NOW + timedelta(days=91)  # preferences_link_days = 90
    expired = client.get(f"/preferences/{good}")
    assert expired.status_code == 400 and "expired" in expired.text


def test_token_of_a_forgotten_member_does_not_open_a_new_member_with_the_same_id(
    engine: Engine, client: TestClient, signer: TokenSigner
) -> None:
    ids = seed(engine)
    token = signer.make(ids["bob@example.org"], "bob@example.org", "unsubscribe", NOW)
    with session_scope(engine) as session:
        remove_member(session, "bob@example.org", NOW, forget=True)
    answer = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 400


# ---------------------------------------------------------------- CSRF


def test_form_posts_without_their_csrf_token_are_refused(
    engine: Engine, client: TestClient, signer: TokenSigner
) -> None:
    ids = seed(engine)
    token = signer.make(ids["ada@example.org"], "ada@example.org", "preferences", NOW)
    other = signer.make(ids["bob@example.org"], "bob@example.org", "preferences", NOW)
    form = {"action": "pause"}
    assert client.post(f"/preferences/{token}", data=form).status_code == 403
    stolen = csrf_of(client.get(f"/preferences/{other}").text)  # valid, but for another page
    answer = client.post(f"/preferences/{token}", data={**form, "csrf_token": stolen})
    assert answer.status_code == 403
    assert status_of(engine, "ada@example.org") == "active"

    subscribe = {
        "email": "eve@example.org",
        "topics": "Space",
        "frequency": "daily",
        "timezone": "UTC",
        "send_hour": "7",
    }
    assert client.post("/subscribe", data=subscribe).status_code == 403
    with Session(engine) as session:
        assert get_member(session, "eve@example.org") is None

    good = csrf_of(client.get(f"/preferences/{token}").text)
    answer = client.post(
        f"/preferences/{token}", data={**form, "csrf_token": good}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert status_of(engine, "ada@example.org") == "paused"


# ---------------------------------------------------------------- subscribe


def subscribe(client: TestClient, email: str, topics: list[str], **extra: str) -> str:
    page = client.get("/subscribe")
    assert page.status_code == 200
    data = {
        "email": email,
        "topics": topics,
        "frequency": "weekly",
        "timezone": "Europe/Paris",
        "send_hour": "9",
        "csrf_token": csrf_of(page.text),
        **extra,
    }
    answer = client.post("/subscribe", data=data)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_double_opt_in_confirms_only_on_post(
    engine: Engine, client: TestClient, smtp_server: SMTPServer
) -> None:
    seed(engine)
    page = client.get("/subscribe")
    for topic in ("Stem Cells", "Space", "Nervous System"):
        assert f'value="{topic}"' in page.text
    subscribe(client, "Carol@Example.org", ["Space", "Nervous System"], name="Carol")
    assert status_of(engine, "carol@example.org") == "pending"
    [mail] = smtp_server.handler.to("carol@example.org")
    assert "Confirm your subscription" in mail.message["Subject"]
    confirm = next(link for link in links_in(mail.data) if link.startswith("/confirm/"))

    shown = client.get(confirm)
    assert shown.status_code == 200 and "Confirm my subscription" in shown.text
    assert status_of(engine, "carol@example.org") == "pending"  # link scanners confirm nothing
    token_path = confirm.split("?")[0]
    p = re.search(r'name="p" value="([^"]*)"', shown.text)
    assert p
    assert client.post(token_path, data={"p": p.group(1)}).status_code == 403  # no CSRF token
    done = client.post(token_path, data={"p": p.group(1), "csrf_token": csrf_of(shown.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of(engine, "carol@example.org") == "active"
    assert member_topics(engine, "carol@example.org") == {"Space", "Nervous System"}
    with Session(engine) as session:
        carol = get_member(session, "carol@example.org")
        assert carol and carol.frequency == "weekly" and carol.timezone == "Europe/Paris"
        assert carol.send_hour == 9 and carol.name == "Carol" and carol.confirmed_at
    again = client.post(token_path, data={"p": p.group(1), "csrf_token": csrf_of(shown.text)})
    assert again.status_code == 200  # idempotent


def test_same_answer_for_new_and_known_address_and_active_member_gets_preferences_link(
    engine: Engine, client: TestClient, smtp_server: SMTPServer
) -> None:
    seed(engine)
    new = subscribe(client, "dan@example.org", ["Space"])
    known = subscribe(client, "ada@example.org", ["Space"])
    assert new.replace("dan@example.org", "X") == known.replace("ada@example.org", "X")
    [mail] = smtp_server.handler.to("ada@example.org")
    assert [link for link in links_in(mail.data) if link.startswith("/preferences/")]
    assert not [link for link in links_in(mail.data) if link.startswith("/confirm/")]
    assert status_of(engine, "ada@example.org") == "active"
    assert member_topics(engine, "ada@example.org") == {"Stem Cells"}  # a stranger changed nothing


def test_unsubscribed_member_is_reactivated_only_by_their_own_fresh_confirmation(
    engine: Engine,
    client: TestClient,
    smtp_server: SMTPServer,
    signer: TokenSigner,
    clock: Clock,
) -> None:
    ids = seed(engine)
    old_confirm = signer.make(ids["bob@example.org"], "bob@example.org", "confirm", NOW)
    clock.now = NOW + timedelta(minutes=5)
    with session_scope(engine) as session:
        set_status(session, "bob@example.org", "unsubscribed", "test", clock.now)
    assert client.get(f"/confirm/{old_confirm}").status_code == 400  # older than the "no"

    clock.now = NOW + timedelta(minutes=10)
    subscribe(client, "bob@example.org", ["Stem Cells"])
    assert status_of(engine, "bob@example.org") == "unsubscribed"  # nothing until confirmed
    [mail] = smtp_server.handler.to("bob@example.org")
    confirm = next(link for link in links_in(mail.data) if link.startswith("/confirm/"))
    shown = client.get(confirm)
    p = re.search(r'name="p" value="([^"]*)"', shown.text)
    assert p
    done = client.post(
        confirm.split("?")[0], data={"p": p.group(1), "csrf_token": csrf_of(shown.text)}
    )
    assert done.status_code == 200
    assert status_of(engine, "bob@example.org") == "active"
    assert member_topics(engine, "bob@example.org") == {"Stem Cells"}


def test_subscribe_validation_errors_are_shown(engine: Engine, client: TestClient) -> None:
    seed(engine)
    page = client.get("/subscribe")
    answer = client.post(
        "/subscribe",
        data={"email": "not an address", "topics": "Nope", "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 400
    assert "Choose at least one topic" in answer.text and "Email:" in answer.text


def test_subscribe_with_a_non_ascii_address(
    engine: Engine, client: TestClient, smtp_server: SMTPServer
) -> None:
    """A Unicode domain is stored as IDNA and mailed; a non-ASCII local part is a form error;
    an old row with a Unicode domain gets no mail and a "not sent" page, not a 500."""
    seed(engine)
    page = client.get("/subscribe")
    answer = client.post(
        "/subscribe",
        data={"email": "josé@example.org", "topics": "Space", "csrf_token": csrf_of(page.text)},
    )
    assert answer.status_code == 400
    assert "Email: &#39;josé@example.org&#39; has non-ASCII characters" in answer.text
    with Session(engine) as session:
        assert get_member(session, "josé@example.org") is None

    subscribe(client, "Ann@Bücher.example", ["Space"])
    assert status_of(engine, "ann@xn--bcher-kva.example") == "pending"
    [mail] = smtp_server.handler.to("ann@xn--bcher-kva.example")
    assert mail.message["To"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"

    with session_scope(engine) as session:
        old = get_member(session, "ada@example.org")
        assert old is not None
        old.email = "ada@exämple.org"  # stored before domains were kept in ASCII
    page = client.get("/subscribe")
    form = {"email": "ada@exämple.org", "topics": "Space", "csrf_token": csrf_of(page.text)}
    answer = client.post("/subscribe", data=form)
    assert answer.status_code == 503 and "could not send the message" in answer.text
    assert len(smtp_server.messages) == 1
    with Session(engine) as session:
        assert len(session.exec(select(Subscriber)).all()) == 3  # no second row for ada


def test_subscribe_past_the_rate_limit_answers_429(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    seed(engine)
    app = create_app(web_settings(settings, subscribe_rate_limit=2), engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as client:
        for i in range(2):
            subscribe(client, f"x{i}@example.org", ["Space"])
        page = client.get("/subscribe")
        answer = client.post(
            "/subscribe",
            data={"email": "x9@example.org", "topics": "Space", "csrf_token": csrf_of(page.text)},
        )
        assert answer.status_code == 429
        assert int(answer.headers["Retry-After"]) > 0
    with Session(engine) as session:
        assert get_member(session, "x9@example.org") is None


# ---------------------------------------------------------------- preferences


def test_preferences_change_topics_rhythm_and_the_next_plan_follows(
    engine: Engine, client: TestClient, settings: Settings, signer: TokenSigner
) -> None:
    ids = seed(engine)
    token = signer.make(ids["ada@example.org"], "ada@example.org", "preferences", NOW)
    page = client.get(f"/preferences/{token}")
    assert page.status_code == 200
    assert re.search(r'value="Stem Cells" checked', page.text)
    form = {
        "topics": ["Space", "Nervous System"],
        "frequency": "daily",
        "timezone": "America/New_York",
        "send_hour": "6",
        "action": "save",
        "csrf_token": csrf_of(page.text),
    }
    answer = client.post(f"/preferences/{token}", data=form)
    assert answer.status_code == 200 and "saved" in answer.text
    assert member_topics(engine, "ada@example.org") == {"Space", "Nervous System"}

    report = plan(engine, settings, NOW, dry_run=True, force=True, emails=["ada@example.org"])
    [item] = report.items
    assert {t for a in item.articles for t in a.topics} == {"Space", "Nervous System"}


def test_pause_resume_and_unsubscribe_from_preferences(
    engine: Engine, client: TestClient, signer: TokenSigner
) -> None:
    ids = seed(engine)
    token = signer.make(ids["ada@example.org"], "ada@example.org", "preferences", NOW)
    for action, status in (
        ("pause", "paused"),
        ("resume", "active"),
        ("unsubscribe", "unsubscribed"),
    ):
        csrf = csrf_of(client.get(f"/preferences/{token}").text)
        client.post(f"/preferences/{token}", data={"action": action, "csrf_token": csrf})
        assert status_of(engine, "ada@example.org") == status
    page = client.get(f"/preferences/{token}")
    assert "subscribe anew" in page.text and 'value="resume"' not in page.text
    answer = client.post(f"/preferences/{token}", data={"action": "resume", "csrf_token": csrf})
    assert answer.status_code == 409
    assert status_of(engine, "ada@example.org") == "unsubscribed"


# ---------------------------------------------------------------- editors


EDITOR = "editor@news.example.org"


def login(client: TestClient, password: str = PASSWORD, email: str = EDITOR) -> int:
    """Sign in (the first time, with the bootstrap password, this makes the first account)."""
    page = client.get("/editor/login")
    answer = client.post(
        "/editor/login",
        data={
            "email": email,
            "password": password,
            "next": "/editor",
            "csrf_token": csrf_of(page.text),
        },
        follow_redirects=False,
    )
    return answer.status_code


def test_editorial_pages_need_a_login(engine: Engine, client: TestClient) -> None:
    seed(engine)
    for path in (
        "/editor",
        "/editor/preview?email=ada@example.org",
        "/editor/preview.html?email=ada@example.org",
    ):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/editor/login")
    answer = client.post("/editor/test-send", data={"email": "ada@example.org", "to": "x@y.org"})
    assert answer.status_code == 401
    assert login(client, "wrong") == 401
    assert client.get("/editor", follow_redirects=False).status_code == 303
    assert login(client) == 303
    assert client.get("/editor", follow_redirects=False).status_code == 200


def test_editor_session_cookie_cannot_be_forged(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    app = create_app(web_settings(settings), engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as client:
        client.cookies.set("digest_editor", "eyJuIjoiYSJ9.forged.sig", path="/editor")
        assert client.get("/editor", follow_redirects=False).status_code == 303
        client.cookies.clear()
        assert login(client) == 303
        real = client.cookies.get("digest_editor") or ""
        client.cookies.clear()
        client.cookies.set("digest_editor", real[:-2] + "xx", path="/editor")
        assert client.get("/editor", follow_redirects=False).status_code == 303
        client.cookies.clear()
        client.cookies.set("digest_editor", real, path="/editor")
        assert client.get("/editor", follow_redirects=False).status_code == 200


def test_without_editor_password_editorial_pages_are_disabled(
    engine: Engine, settings: Settings
) -> None:
    app = create_app(settings.replace(editor_password=""), engine)
    with TestClient(app, base_url="https://news.example.org") as client:
        for path in ("/editor", "/editor/login"):
            answer = client.get(path)
            assert answer.status_code == 503
            assert "digest editors add" in answer.text


def test_upcoming_issue_counts_per_topic_and_filters(engine: Engine, client: TestClient) -> None:
    seed(engine)
    assert login(client) == 303
    page = client.get("/editor/upcoming")
    assert "ada@example.org" in page.text and "bob@example.org" in page.text
    assert re.search(r"Stem Cells</a></td><td>1</td><td>1</td>", page.text)
    filtered = client.get("/editor/upcoming", params={"topic": "space"})
    assert "bob@example.org" in filtered.text and "ada@example.org" not in filtered.text
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []  # a dry run writes nothing


def test_preview_is_the_member_message_and_test_copy_is_not_a_delivery(
    engine: Engine, client: TestClient, smtp_server: SMTPServer
) -> None:
    seed(engine)
    assert login(client) == 303
    page = client.get("/editor/preview", params={"email": "ada@example.org"})
    assert page.status_code == 200
    assert "Stem cells repair a heart" in page.text
    assert 'id="phone"' in page.text and 'id="desktop"' in page.text
    assert "List-Unsubscribe" in page.text and "Subject" in page.text
    html = client.get("/editor/preview.html", params={"email": "ada@example.org"})
    assert html.status_code == 200 and "sandbox" in html.headers["content-security-policy"]
    assert "Stem cells repair a heart" in html.text

    by_topics = client.get("/editor/preview", params={"topics": ["Space"]})
    assert by_topics.status_code == 200 and "A new rover lands on Mars" in by_topics.text

    csrf = csrf_of(page.text)
    assert (
        client.post(
            "/editor/test-send", data={"email": "ada@example.org", "to": "qa@example.net"}
        ).status_code
        == 403
    )
    answer = client.post(
        "/editor/test-send",
        data={"email": "ada@example.org", "to": "qa@example.net", "csrf_token": csrf},
    )
    assert answer.status_code == 200, answer.text
    [mail] = smtp_server.handler.to("qa@example.net")
    assert mail.message["Subject"].startswith("[TEST] ")
    assert smtp_server.handler.to("ada@example.org") == []
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []
    # the copy's personal links are bound to the tester's address: they cannot touch ada
    unsub = next(link for link in links_in(mail.data) if link.startswith("/unsubscribe/"))
    client.post(unsub, data={"List-Unsubscribe": "One-Click"})
    assert status_of(engine, "ada@example.org") == "active"
    # a session's test copies are bounded
    client.app.state.web.test_copy_limiter = RateLimiter(1, 3600)
    form = {"email": "ada@example.org", "to": "qa@example.net", "csrf_token": csrf}
    assert client.post("/editor/test-send", data=form).status_code == 200
    again = client.post("/editor/test-send", data=form)
    assert again.status_code == 429 and "Too many test copies" in again.text
    assert len(smtp_server.handler.to("qa@example.net")) == 2


def test_subscribe_mails_to_one_address_are_bounded_and_failures_said(
    engine: Engine, settings: Settings, clock: Clock, client: TestClient, smtp_server: SMTPServer
) -> None:
    """Many requests for one address (from many client addresses) send it three mails a day;
    a mail the server did not take is said, not reported as sent."""
    seed(engine)
    for _ in range(3):
        assert "We have sent a message" in subscribe(client, "victim@example.net", ["Space"])
    capped = subscribe(client, "victim@example.net", ["Space"])
    assert "We already sent you a link" in capped and "We have sent" not in capped
    assert len(smtp_server.handler.to("victim@example.net")) == 3

    closed = SMTPTransport("127.0.0.1", free_port(), "none", "", "", 1.0)
    app = create_app(web_settings(settings), engine, clock=clock, transport_factory=lambda: closed)
    with TestClient(app, base_url="https://news.example.org") as down:
        page = down.get("/subscribe")
        form = {"email": "carol@example.org", "topics": ["Space"], "csrf_token": csrf_of(page.text)}
        answer = down.post("/subscribe", data=form)
    assert answer.status_code == 503 and "We could not send the message" in answer.text
    assert "We have sent" not in answer.text


# ---------------------------------------------------------------- operators


METRICS_TOKEN = "metrics-token-0123456789"
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def test_healthz_and_metrics(engine: Engine, settings: Settings, clock: Clock) -> None:
    seed(engine)
    app = create_app(web_settings(settings, metrics_token=METRICS_TOKEN), engine, clock=clock)
    client = TestClient(app, base_url="https://news.example.org", headers=BEARER)
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'digest_deliveries{status="sent"} 0' in metrics.text
    assert 'digest_members{status="active"} 2' in metrics.text
    assert "digest_queue_depth 0" in metrics.text
    assert "digest_send_rate_per_second 0" in metrics.text
    plan(engine, settings, NOW, force=True)
    record_tick(NOW)
    metrics = client.get("/metrics").text
    assert "digest_queue_depth 2" in metrics
    assert f"digest_scheduler_last_tick_timestamp_seconds {NOW.timestamp():.3f}" in metrics


def test_metrics_name_the_last_error_of_a_worker_that_met_an_outage(
    engine: Engine, settings: Settings, clock: Clock, cli: CLI
) -> None:
    """A worker meets an SMTP outage; /metrics shows its heartbeat, its last error as a
    label, its SMTP errors by class and the scheduler gauges."""
    seed(engine)
    plan(engine, settings, NOW, force=True)
    cli.env["DIGEST_SMTP_PORT"] = str(free_port())  # the SMTP server is away
    assert cli("worker", "--once", "--worker-id", "mailer-1").exit_code == 1
    app = create_app(web_settings(settings, metrics_token=METRICS_TOKEN), engine, clock=clock)
    text = TestClient(app, base_url="https://news.example.org", headers=BEARER).get("/metrics").text
    who = 'process="mailer-1",kind="worker"'
    (line,) = [x for x in text.splitlines() if x.startswith("digest_process_last_error_info{")]
    assert line.startswith(f'digest_process_last_error_info{{{who},error="the SMTP server: ')
    assert "ConnectionRefusedError" in line and line.endswith("} 1")
    assert f'digest_smtp_errors_total{{{who},class="connection"}} 1' in text
    assert f'digest_deliveries_total{{{who},outcome="sent"}} 0' in text
    assert f"digest_store_reconnects_total{{{who}}} 0" in text
    assert f'digest_process_up{{{who},state="stopped"}} 0' in text
    assert "digest_scheduler_active 0" in text and "digest_store_up 1" in text


def test_metrics_answer_while_the_store_is_away(
    settings: Settings, db_url: str, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL behind a TCP proxy that is cut: /metrics still answers 200 with the last
    store gauges read, marked stale, and says the store is down; a page that needs the
    store answers 503 "back in a moment", with no traceback in the log."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL run only (a TCP proxy in front of the server)")
    from sqlalchemy.engine import make_url

    from digest.db import create_schema, make_engine
    from tests.tcp_proxy import tcp_proxy

    direct = make_url(db_url)
    with tcp_proxy((direct.host or "127.0.0.1", direct.port or 5432)) as proxy:
        engine = make_engine(direct.set(host=proxy.host, port=proxy.port).render_as_string(False))
        create_schema(engine)
        seed(engine)
        app = create_app(web_settings(settings, metrics_token=METRICS_TOKEN), engine, clock=clock)
        client = TestClient(app, base_url="https://news.example.org", headers=BEARER)
        fresh = client.get("/metrics")
        assert fresh.status_code == 200 and "digest_store_up 1" in fresh.text
        proxy.cut()
        stale = client.get("/metrics")
        assert stale.status_code == 200
        assert "digest_store_up 0" in stale.text and "digest_metrics_stale 1" in stale.text
        assert 'digest_members{status="active"} 2' in stale.text  # the last ones read
        assert client.get("/healthz").status_code == 503
        page = client.get("/subscribe")  # a page that reads the store: 503, no traceback
        assert page.status_code == 503 and "Back in a moment" in page.text
        assert page.headers["retry-after"] == "30"
        assert not [r for r in caplog.records if r.exc_info]
        proxy.restore()
        again = client.get("/metrics")
        assert "digest_store_up 1" in again.text and "digest_metrics_stale 0" in again.text
        engine.dispose()


def test_healthz_answers_503_when_the_database_is_unreachable(settings: Settings) -> None:
    dead = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    app = create_app(settings, dead)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 503


def test_security_headers(engine: Engine, client: TestClient) -> None:
    answer = client.get("/subscribe")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie


def test_cookies_are_secure_on_an_https_site_behind_a_silent_proxy(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    """TLS ends at a proxy that sends no X-Forwarded-Proto: base_url says the site is https."""
    for base_url, secure in (("https://news.example.org", True), ("http://127.0.0.1:8000", False)):
        app = create_app(web_settings(settings, base_url=base_url), engine, clock=clock)
        plain_url = "http://" + base_url.split("://", 1)[1]  # TLS ended at the proxy
        with TestClient(app, base_url=plain_url) as plain:
            cookie = plain.get("/subscribe").headers["set-cookie"].lower()
        assert ("secure" in cookie) is secure and "httponly" in cookie


def test_request_bodies_are_bounded(engine: Engine, client: TestClient) -> None:
    """A body over 64 KB is refused with 413 before it is read, declared or streamed."""
    seed(engine)
    big = b"email=" + b"a" * (200 * 1024)
    declared = client.post("/unsubscribe/nope", content=big, headers={"content-type": URLENCODED})
    assert declared.status_code == 413 and "Too large" in declared.text
    assert declared.headers["x-content-type-options"] == "nosniff"

    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield b"a" * 1024

    streamed = client.post("/subscribe", content=chunks(), headers={"content-type": URLENCODED})
    assert streamed.status_code == 413
    small = client.post("/unsubscribe/nope", data={"email": "x"})
    assert small.status_code == 400  # an ordinary bad token, read and refused as before


def test_a_server_error_page_carries_the_security_headers(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the store went away")

    app = create_app(web_settings(settings), engine, clock=clock)
    app.router.routes.insert(0, Route("/boom", broken))
    with TestClient(
        app, base_url="https://news.example.org", raise_server_exceptions=False
    ) as test_client:
        answer = test_client.get("/boom")
    assert answer.status_code == 500 and "store went away" not in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"


def test_app_needs_a_secret_key(engine: Engine, settings: Settings) -> None:
    with pytest.raises(ValueError, match="DIGEST_SECRET_KEY"):
        create_app(settings.replace(secret_key=""), engine)


def test_web_command_help() -> None:
    from click.testing import CliRunner

    from digest.cli.web import COMMANDS

    result = CliRunner().invoke(COMMANDS[0], ["--help"])
    assert result.exit_code == 0 and "--port" in result.output and "--host" in result.output


# ---------------------------------------------------------------- templates_dir over built-ins


def test_templates_dir_overrides_a_page_and_a_static_file_and_keeps_the_rest(
    engine: Engine, settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    from digest import resources

    own = tmp_path / "own"
    (own / "web" / "static").mkdir(parents=True)
    (own / "web" / "static" / "site.css").write_text("body { color: rebeccapurple }\n")
    (own / "web" / "static" / "logo.svg").write_text("<svg/>")
    (own / "web" / "message.html").write_text(
        '{% extends "base.html" %}{% block main %}<p class="own">{{ text }}</p>{% endblock %}'
    )
    builtin_js = resources.path("templates/web/static/tz.js").read_bytes()

    plain = create_app(web_settings(settings), engine, clock=clock)
    with TestClient(plain, base_url="https://news.example.org") as client:
        css = client.get("/static/site.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert css.content == resources.path("templates/web/static/site.css").read_bytes()
        assert client.get("/static/logo.svg").status_code == 404
        assert client.get("/static/../../settings.py").status_code == 404

    custom = create_app(web_settings(settings, templates_dir=str(own)), engine, clock=clock)
    with TestClient(custom, base_url="https://news.example.org") as client:
        assert client.get("/static/site.css").text == "body { color: rebeccapurple }\n"
        assert client.get("/static/logo.svg").text == "<svg/>"
        assert client.get("/static/tz.js").content == builtin_js  # not overridden: built-in
        page = client.get("/subscribe")  # not overridden: the built-in page
        assert page.status_code == 200 and "<form" in page.text
        gone = client.get("/unsubscribe/not-a-token")  # a message page: the operator's
        assert '<p class="own">' in gone.text


# ---------------------------------------------------------------- which topics are offered


def offered_on(page: str) -> set[str]:
    return set(re.findall(r'name="topics" value="([^"]*)"', page))


def test_forms_offer_topics_with_articles_not_orphans(
    engine: Engine, client: TestClient, signer: TokenSigner
) -> None:
    """Topics that only a member list named (a CSV row with thousands) are no public choice."""
    ids = seed(engine)
    with session_scope(engine) as session:
        names = tuple(f"Orphan {i}" for i in range(40))
        add_member(session, MemberRecord("orphans@example.org", "", names), NOW)
        add_member(
            session,
            MemberRecord("ada@example.org", "Ada", ("Stem Cells", "Orphan 3")),
            NOW,
        )
    small = client.get("/subscribe")
    assert offered_on(small.text) == {"Stem Cells", "Space", "Nervous System"}
    token = signer.make(ids["ada@example.org"], "ada@example.org", "preferences", NOW)
    page = client.get(f"/preferences/{token}")
    # a member's own topics stay on their own page, checked, so saving keeps them
    assert offered_on(page.text) == {"Stem Cells", "Space", "Nervous System", "Orphan 3"}
    form = {
        "topics": ["Stem Cells", "Orphan 3", "Orphan 4"],
        "frequency": "daily",
        "timezone": "UTC",
        "send_hour": "7",
        "action": "save",
        "csrf_token": csrf_of(page.text),
    }
    assert client.post(f"/preferences/{token}", data=form).status_code == 200
    assert member_topics(engine, "ada@example.org") == {"Stem Cells", "Orphan 3"}

    with session_scope(engine) as session:
        remove_member(session, "orphans@example.org", NOW, forget=True)
    assert offered_on(client.get("/subscribe").text) == offered_on(small.text)


def test_forms_offer_the_configured_topics(
    engine: Engine, settings: Settings, clock: Clock, smtp_server: SMTPServer
) -> None:
    seed(engine)
    curated = web_settings(settings, topics=("Space", "Genetics"), max_topics_per_member=1)
    app = create_app(curated, engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as client:
        page = client.get("/subscribe")
        assert offered_on(page.text) == {"Space", "Genetics"}  # curated, articles or not
        form = {
            "email": "gene@example.org",
            "topics": ["Space", "Genetics"],
            "csrf_token": csrf_of(page.text),
        }
        too_many = client.post("/subscribe", data=form)
        assert too_many.status_code == 400 and "at most 1 topic" in too_many.text
        form["topics"] = ["Genetics", "Stem Cells"]  # Stem Cells is not offered: ignored
        assert client.post("/subscribe", data=form).status_code == 200
    [mail] = smtp_server.handler.to("gene@example.org")
    confirm = next(link for link in links_in(mail.data) if link.startswith("/confirm/"))
    with TestClient(app, base_url="https://news.example.org") as client:
        shown = client.get(confirm)
        p = re.search(r'name="p" value="([^"]*)"', shown.text)
        assert p
        data = {"p": p.group(1), "csrf_token": csrf_of(shown.text)}
        assert client.post(confirm.split("?")[0], data=data).status_code == 200
    assert member_topics(engine, "gene@example.org") == {"Genetics"}


# ---------------------------------------------------------------- a stranger's words


EVIL_NAME = "Your mailbox is full - restore it now at https://evil.example/restore"


def confirm_link(smtp_server: SMTPServer, email: str, index: int = -1) -> str:
    mails = smtp_server.handler.to(email)
    return next(link for link in links_in(mails[index].data) if link.startswith("/confirm/"))


def confirm_via(client: TestClient, link: str) -> None:
    shown = client.get(link)
    p = re.search(r'name="p" value="([^"]*)"', shown.text)
    assert p
    data = {"p": p.group(1), "csrf_token": csrf_of(shown.text)}
    assert client.post(link.split("?")[0], data=data).status_code == 200


def test_confirmation_mail_carries_no_visitor_text_and_names_wait_for_the_owner(
    engine: Engine, client: TestClient, smtp_server: SMTPServer
) -> None:
    seed(engine)
    subscribe(client, "victim@example.net", ["Space"], name=EVIL_NAME)
    [mail] = smtp_server.handler.to("victim@example.net")
    message = mail.message
    assert message["To"].addresses[0].display_name == ""
    assert str(message["To"]) == "victim@example.net"
    texts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    assert len(texts) == 2
    for words in ("mailbox is full", "evil.example", "restore it"):
        assert words not in mail.data.decode("utf-8", "replace")
        assert all(words not in text for text in texts)
    with Session(engine) as session:
        pending = get_member(session, "victim@example.net")
        assert pending is not None and pending.status == "pending" and pending.name == ""

    # the owner asks with a blank name and other topics, and confirms their own link
    subscribe(client, "victim@example.net", ["Nervous System"])
    confirm_via(client, confirm_link(smtp_server, "victim@example.net"))
    with Session(engine) as session:
        member = get_member(session, "victim@example.net")
        assert member is not None and member.status == "active" and member.name == ""
        assert member.frequency == "weekly" and member.timezone == "Europe/Paris"
    assert member_topics(engine, "victim@example.net") == {"Nervous System"}

    # a name becomes the member's when the owner confirms the request that carried it
    subscribe(client, "zoe@example.net", ["Space"], name="Zoë")
    subscribe(client, "zoe@example.net", ["Space"], name="Zoë Müller")
    confirm_via(client, confirm_link(smtp_server, "zoe@example.net", 0))
    with Session(engine) as session:
        zoe = get_member(session, "zoe@example.net")
        assert zoe is not None and zoe.name == "Zoë"


# ---------------------------------------------------------------- metrics are not public


def test_metrics_need_a_token_or_their_own_listener(
    engine: Engine, client: TestClient, settings: Settings, clock: Clock
) -> None:
    from digest.web import create_metrics_app

    seed(engine)
    closed = client.get("/metrics")  # neither configured: nobody gets them
    assert closed.status_code == 403 and "digest_members" not in closed.text
    assert "DIGEST_METRICS_TOKEN" in closed.text and "metrics_listen" in closed.text

    app = create_app(web_settings(settings, metrics_token=METRICS_TOKEN), engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as scraper:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            refused = scraper.get("/metrics", headers=headers)
            assert refused.status_code == 401 and "digest_members" not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        assert scraper.get("/metrics", headers=BEARER).status_code == 200

    listener = web_settings(settings, metrics_listen="127.0.0.1:9464")
    app = create_app(listener, engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as public:
        assert public.get("/metrics").status_code == 404  # served on the other address only
        assert public.get("/healthz").status_code == 200
    with TestClient(create_metrics_app(app), base_url="http://127.0.0.1:9464") as private:
        answer = private.get("/metrics")
        assert answer.status_code == 200 and 'digest_members{status="active"} 2' in answer.text
        assert private.get("/subscribe").status_code == 404  # nothing else there


def test_metrics_do_not_tell_whether_an_address_is_a_member(
    engine: Engine, settings: Settings, clock: Clock, smtp_server: SMTPServer
) -> None:
    """The pending count moved by one for a new address and not for a member's."""
    seed(engine)
    app = create_app(web_settings(settings, metrics_token=METRICS_TOKEN), engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as client:
        before = client.get("/metrics", headers=BEARER).text
        subscribe(client, "newcomer@example.org", ["Space"])
        after_new = client.get("/metrics", headers=BEARER).text
        subscribe(client, "ada@example.org", ["Space"])
        after_member = client.get("/metrics", headers=BEARER).text
    assert status_of(engine, "newcomer@example.org") == "pending"
    assert before == after_new == after_member
    assert 'digest_members{status="active"} 2' in before


# ---------------------------------------------------------------- hosts


def test_only_the_sites_own_hosts_are_served(
    engine: Engine, client: TestClient, settings: Settings, signer: TokenSigner, clock: Clock
) -> None:
    """Host: evil.example turned the trailing-slash redirect into a link to evil.example."""
    ids = seed(engine)
    token = signer.make(ids["ada@example.org"], "ada@example.org", "unsubscribe", NOW)
    evil = {"Host": "evil.example"}
    answer = client.get(f"/unsubscribe/{token}/", headers=evil, follow_redirects=False)
    assert answer.status_code == 400 and "evil.example" not in answer.headers.get("location", "")
    assert answer.headers["x-frame-options"] == "DENY"
    for path in ("/subscribe", f"/unsubscribe/{token}", "/editor/login", "/static/site.css"):
        assert client.get(path, headers=evil).status_code == 400, path
    assert client.post("/subscribe", headers=evil, data={}).status_code == 400
    own = client.get(f"/unsubscribe/{token}/", follow_redirects=False)
    assert own.status_code in (301, 307, 308)
    assert own.headers["location"] == f"https://news.example.org/unsubscribe/{token}"
    assert client.get("/subscribe", headers={"Host": "NEWS.example.org:443"}).status_code == 200
    # probes that know no host name still get an answer; nothing there builds a link
    assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    # the machine's own loopback names reach every page: a link to them poisons nothing
    for loopback in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert client.get("/subscribe", headers={"Host": loopback}).status_code == 200

    local = create_app(web_settings(settings, base_url="http://localhost:8000"), engine)
    with TestClient(local, base_url="http://127.0.0.1:8123") as dev:  # one machine's names
        assert dev.get("/subscribe").status_code == 200
        assert dev.get("/subscribe", headers={"Host": "[::1]:8000"}).status_code == 200
        assert dev.get("/subscribe", headers=evil).status_code == 400

    extra = web_settings(settings, allowed_hosts=("www.example.org", "*.news.example.net"))
    app = create_app(extra, engine, clock=clock)
    with TestClient(app, base_url="https://www.example.org") as www:
        assert www.get("/subscribe").status_code == 200
        assert www.get("/subscribe", headers={"Host": "a.news.example.net"}).status_code == 200
        assert www.get("/subscribe", headers=evil).status_code == 400


# ---------------------------------------------------------------- the per-address cap


def test_the_cap_on_mails_to_one_address_never_locks_out_its_owner(
    engine: Engine, settings: Settings, clock: Clock, smtp_server: SMTPServer
) -> None:
    """Five requests from five clients used the address's three mails for the day, and the
    owner's own request then said "Check your inbox" with nothing sent."""
    seed(engine)
    app = create_app(web_settings(settings, subscribe_rate_limit=1), engine, clock=clock)
    answers = []
    for i in range(5):
        with TestClient(
            app, base_url="https://news.example.org", client=(f"10.0.0.{i}", 5000)
        ) as stranger:
            answers.append(subscribe(stranger, "owner@example.net", ["Space"]))
    assert len(smtp_server.handler.to("owner@example.net")) == 3
    assert all("We have sent a message" in a for a in answers[:3])
    with TestClient(app, base_url="https://news.example.org", client=("192.0.2.1", 5000)) as owner:
        honest = subscribe(owner, "owner@example.net", ["Stem Cells"])
        assert "We have sent" not in honest and "Check your inbox" not in honest
        assert "We already sent you a link" in honest
        assert len(smtp_server.handler.to("owner@example.net")) == 3
        # the links already sent work, and what they lead to is never blocked
        link = confirm_link(smtp_server, "owner@example.net", 0)
        shown = owner.get(link)
        p = re.search(r'name="p" value="([^"]*)"', shown.text)
        assert p
        done = owner.post(
            link.split("?")[0], data={"p": p.group(1), "csrf_token": csrf_of(shown.text)}
        )
        assert done.status_code == 200 and status_of(engine, "owner@example.net") == "active"
        prefs = next(m for m in LINK_RE.findall(done.text) if m.startswith("/preferences/"))
        page = owner.get(prefs)
        assert owner.post("/subscribe", data={}).status_code == 429  # this client's limit
        form = {
            "topics": ["Stem Cells"],
            "frequency": "daily",
            "timezone": "UTC",
            "send_hour": "6",
            "action": "save",
            "csrf_token": csrf_of(page.text),
        }
        saved = owner.post(prefs, data=form, follow_redirects=False)
        assert saved.status_code == 303
    assert member_topics(engine, "owner@example.net") == {"Stem Cells"}
