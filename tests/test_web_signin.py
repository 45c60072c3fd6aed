"""Signing in to the archive with a one-time link, in Chromium with the mail received by the
loopback SMTP server: a visitor reads the first key point, a member after the link reads all;
the link used twice or after 20 minutes is refused with a page that offers a new one."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta

import lxml.html
import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from digest.members import parse_changes
from digest.members.store import add_member
from digest.settings import Settings
from digest.web import create_app
from tests.archive_helpers import NOW, SEED, Clock, seed_archive, serve
from tests.conftest import SMTPServer


def add_ann(engine: Engine) -> None:
    with Session(engine) as session:
        record, _ = parse_changes("ann@example.org", "test", follows=["Keio University"])
        add_member(session, record, NOW)
        session.commit()


def wait_for_mail(smtp: SMTPServer, to: str, count: int, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while len(smtp.handler.to(to)) < count:
        assert time.monotonic() < deadline, f"no mail for {to}"
        time.sleep(0.05)
    return smtp.handler.to(to)[count - 1].data


def signin_link(data: bytes, base: str) -> str:
    text = data.decode("utf-8", "replace").replace("=\r\n", "").replace("=3D", "=")
    found = re.search(re.escape(base) + r"/signin/[A-Za-z0-9_.\-]+", text)
    assert found, "no sign-in link in the mail"
    return found.group(0)


def key_points_shown(page: object) -> list[str]:
    texts = page.locator(".point").all_inner_texts()  # type: ignore[attr-defined]
    return [" ".join(t.split()) for t in texts]


def test_one_time_link_in_chromium(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed")
    seed_archive(engine)
    add_ann(engine)
    points = [" ".join(p.split()) for p in SEED["key_points"]]
    with serve(engine, settings) as (base, clock), sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        visitor = browser.new_page()
        visitor.goto(f"{base}/articles/1")
        assert key_points_shown(visitor) == points[:1]
        assert "Join the club for free to read the whole archive" in visitor.content()
        visitor.click("text=Sign in with a link by email")
        visitor.wait_for_url(re.compile(r".*/signin\?next=.*"))
        visitor.fill("input[name=email]", "ann@example.org")
        visitor.click("main button[type=submit]")
        assert "Check your inbox" in visitor.locator("h1").inner_text()
        link = signin_link(wait_for_mail(smtp_server, "ann@example.org", 1), base)

        visitor.goto(link)  # opening the link signs in and returns to the article
        visitor.wait_for_url(f"{base}/articles/1")
        assert key_points_shown(visitor) == points
        assert "Join the club" not in visitor.content()

        again = browser.new_page()  # the same link a second time, anywhere, is refused
        response = again.goto(link)
        assert response is not None and response.status == 410
        assert "already been used" in again.content()
        assert key_points_shown(again) == []
        again.fill("input[name=email]", "ann@example.org")  # and offers a new one
        again.click("main button[type=submit]")
        assert "Check your inbox" in again.locator("h1").inner_text()
        late = signin_link(wait_for_mail(smtp_server, "ann@example.org", 2), base)
        clock.now = NOW + timedelta(minutes=21)
        fresh = browser.new_context().new_page()
        response = fresh.goto(late)
        assert response is not None and response.status == 410
        assert "expired" in fresh.content() and fresh.locator("input[name=email]").count() == 1
        fresh.goto(f"{base}/articles/1")
        assert key_points_shown(fresh) == points[:1]

        visitor.click("header button:text('Sign out')")
        visitor.goto(f"{base}/articles/1")
        assert key_points_shown(visitor) == points[:1]
        browser.close()


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    seed_archive(engine)
    add_ann(engine)
    with TestClient(
        create_app(settings, engine, clock=Clock()), base_url="https://news.example.org"
    ) as test_client:
        yield test_client


def test_the_link_signs_in_without_a_browser(client: TestClient, smtp_server: SMTPServer) -> None:
    """No script, no CSRF field: a plain client asks with the address alone and opens the
    link; the link works once."""
    points = [" ".join(p.split()) for p in SEED["key_points"]]
    asked = client.post("/signin", data={"email": "ann@example.org", "next": "/articles/1"})
    assert asked.status_code == 200 and "Check your inbox" in asked.text
    link = signin_link(wait_for_mail(smtp_server, "ann@example.org", 1), str(client.base_url))
    opened = client.get(link, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/articles/1"
    page = lxml.html.fromstring(client.get("/articles/1").text)
    assert [" ".join(e.text_content().split()) for e in page.find_class("point")] == points
    assert "Join the club" not in page.text_content()
    client.cookies.clear()
    again = client.get(link)
    assert again.status_code == 410 and "already been used" in again.text
    assert 'name="email"' in again.text


def ask(client: TestClient, email: str) -> object:
    form = client.get("/signin")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    return client.post("/signin", data={"email": email, "csrf_token": token.group(1)})


def test_asking_never_says_whether_the_address_is_a_members(
    client: TestClient, smtp_server: SMTPServer
) -> None:
    member = ask(client, "ann@example.org")
    stranger = ask(client, "nobody@example.org")
    assert member.status_code == stranger.status_code == 200  # type: ignore[attr-defined]
    words = [
        r.text.replace(e, "EMAIL")  # type: ignore[attr-defined]
        for r, e in ((member, "ann@example.org"), (stranger, "nobody@example.org"))
    ]
    assert words[0] == words[1]
    assert len(smtp_server.handler.to("ann@example.org")) == 1
    assert smtp_server.handler.to("nobody@example.org") == []
    hostile = ask(client, "x@example.org\r\nBcc: victim@example.org")
    assert hostile.status_code == 400  # type: ignore[attr-defined]
    assert client.get("/signin/forged-token").status_code == 400


def test_a_mistyped_address_is_named_in_one_sentence(client: TestClient) -> None:
    page = ask(client, "ann-at-example.org")
    assert page.status_code == 400  # type: ignore[attr-defined]
    errors = lxml.html.document_fromstring(page.text).xpath("//*[@role='alert']//li")  # type: ignore[attr-defined]
    (error,) = [" ".join(e.text_content().split()) for e in errors]
    assert error.startswith("Email: invalid address 'ann-at-example.org': ") and error.endswith(
        "@-sign."
    )
    assert ".." not in error


def test_asking_is_limited_per_address_quietly_and_per_client_openly(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    seed_archive(engine)
    add_ann(engine)
    app = create_app(settings, engine, clock=Clock())
    answers = []
    for i in range(5):  # five clients ask for one address: three links, the same words
        with TestClient(
            app, base_url="https://news.example.org", client=(f"10.0.0.{i}", 5000)
        ) as other:
            answers.append(ask(other, "ann@example.org"))
    assert len(smtp_server.handler.to("ann@example.org")) == 3
    assert len({a.text for a in answers}) == 1  # type: ignore[attr-defined]
    with TestClient(app, base_url="https://news.example.org", client=("10.9.9.9", 5000)) as one:
        statuses = [ask(one, f"n{i}@example.org").status_code for i in range(22)]  # type: ignore[attr-defined]
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]


def test_the_next_page_after_signing_in_stays_on_this_site() -> None:
    from digest.web.signin import safe_next

    assert safe_next("/articles/1") == "/articles/1"
    assert safe_next("/topics/stem%20cells?page=2") == "/topics/stem%20cells?page=2"
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil", "/editor", "", None,
                "/archive\r\nLocation: x", "/articles/" + "x" * 600):  # fmt: skip
        assert safe_next(bad) == "/archive"


def test_the_per_client_limit_counts_an_ipv6_host_by_its_64_not_by_each_address(
    engine: Engine, settings: Settings
) -> None:
    # one IPv6 host holds a whole /64: a new address for each ask would escape the limit
    seed_archive(engine)
    app = create_app(settings, engine, clock=Clock())
    statuses = []
    for i in range(22):
        with TestClient(
            app, base_url="https://news.example.org", client=(f"2001:db8:1:2::{i + 1:x}", 5000)
        ) as one:
            statuses.append(ask(one, f"n{i}@example.org").status_code)  # type: ignore[attr-defined]
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]
    with TestClient(
        app, base_url="https://news.example.org", client=("2001:db8:1:3::1", 5000)
    ) as neighbour:
        assert ask(neighbour, "x@example.org").status_code == 200  # type: ignore[attr-defined]
