"""The web app in a real browser: Debian's chromium driven by Playwright, headless.

Never downloads a browser: skipped when /usr/bin/chromium (or Playwright) is missing. The app
runs under uvicorn in a thread on a free loopback port, mail goes to the loopback aiosmtpd
server, and DIGEST_BASE_URL points at the app so every link in a mail opens it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from digest.db import session_scope
from digest.ingest.records import ArticleRecord
from digest.ingest.store import upsert_articles
from digest.settings import Settings
from digest.web import create_app
from tests.conftest import CLI, SMTPServer, free_port, serve_app
from tests.test_web import NOW, PASSWORD, Clock, member_topics, seed, status_of

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")


@pytest.fixture
def live(engine: Engine, settings: Settings) -> Iterator[tuple[str, Clock]]:
    """The app under uvicorn on 127.0.0.1:<free port>; yields its base URL and its clock."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web_settings = settings.replace(base_url=base, editor_password=PASSWORD)
    clock = Clock()
    app = create_app(web_settings, engine, clock=clock)
    with serve_app(app, port, start_seconds=10):
        yield base, clock


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


def wait_for_mail(smtp: SMTPServer, to: str, count: int = 1, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while len(smtp.handler.to(to)) < count:
        assert time.monotonic() < deadline, f"no mail for {to}"
        time.sleep(0.05)
    return smtp.handler.to(to)[count - 1].data


def link(data: bytes, base: str, kind: str) -> str:
    text = data.decode("utf-8", "replace").replace("=\r\n", "").replace("=3D", "=")
    match = re.search(re.escape(base) + rf"/{kind}/[^\s\"<>]+", text)
    assert match, f"no {kind} link"
    return match.group(0)


def test_member_and_editor_flows_in_chromium(
    engine: Engine,
    live: tuple[str, Clock],
    browser: sync_api.Browser,
    smtp_server: SMTPServer,
    cli_env: dict[str, str],
) -> None:
    base, clock = live
    seed(engine)
    cli = CLI({**cli_env, "DIGEST_BASE_URL": base})

    # -- an editor logs in, previews Ada's issue on a phone, sends a test copy
    editor = browser.new_context(viewport={"width": 1280, "height": 900})
    page = editor.new_page()
    page.goto(f"{base}/editor")
    assert "/editor/login" in page.url
    page.fill("#email", "editor@news.example.org")
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/editor")
    page.goto(f"{base}/editor/upcoming")
    assert "ada@example.org" in page.content()
    page.goto(f"{base}/editor/preview?email=ada@example.org")
    phone = page.frame_locator("#phone").locator("body")
    phone.wait_for()
    frames = [f for f in page.frames if f is not page.main_frame]
    assert len(frames) == 2
    widths = sorted(
        f.evaluate("[document.documentElement.scrollWidth, window.innerWidth]") for f in frames
    )
    assert widths[0] == [375, 375], widths  # no horizontal scrolling at 375 px
    assert widths[1][1] >= 600
    page.fill("#to", "qa@example.net")
    page.click("text=Send test")
    page.wait_for_selector("text=Test copy sent")
    test_copy = wait_for_mail(smtp_server, "qa@example.net")
    assert b"Subject: [TEST] " in test_copy
    editor.close()

    # -- a visitor subscribes; the confirmation mail arrives; the button confirms
    visitor = browser.new_context(timezone_id="Europe/Berlin")
    page = visitor.new_page()
    page.goto(f"{base}/subscribe")
    assert page.input_value("#timezone") == "Europe/Berlin"  # detected in the browser
    page.fill("#email", "carol@example.org")
    page.check("input[name=topics][value='Space']")
    page.check("input[name=topics][value='Nervous System']")
    page.select_option("#send_hour", "7")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    assert status_of(engine, "carol@example.org") == "pending"
    page.goto(link(wait_for_mail(smtp_server, "carol@example.org"), base, "confirm"))
    assert status_of(engine, "carol@example.org") == "pending"
    page.click("text=Confirm my subscription")
    page.wait_for_selector("text=You are subscribed")
    assert status_of(engine, "carol@example.org") == "active"

    # -- her first digest; from its preferences link she adds one topic and drops another
    assert cli("run", "--now", NOW.isoformat()).exit_code == 0
    digest = wait_for_mail(smtp_server, "carol@example.org", 2)
    page.goto(link(digest, base, "preferences"))
    page.check("input[name=topics][value='Stem Cells']")
    page.uncheck("input[name=topics][value='Space']")
    page.click("text=Save changes")
    page.wait_for_selector("text=Your changes are saved")
    assert member_topics(engine, "carol@example.org") == {"Stem Cells", "Nervous System"}

    # -- the next run selects by the new topics
    later = NOW + timedelta(days=1)
    with session_scope(engine) as session:
        upsert_articles(
            session,
            [
                ArticleRecord(
                    url=f"https://archive.example.org/{slug}",
                    title=title,
                    published_at=later - timedelta(hours=3),
                    key_points=("Point.",),
                    topics=(topic,),
                )
                for slug, title, topic in (
                    ("organoids", "Organoids grow teeth", "Stem Cells"),
                    ("comet", "A comet visits", "Space"),
                )
            ],
            later - timedelta(hours=2),
        )
    assert cli("run", "--now", later.isoformat()).exit_code == 0
    second = wait_for_mail(smtp_server, "carol@example.org", 3)
    clock.now = later
    assert b"Organoids grow teeth" in second and b"A comet visits" not in second

    # -- the unsubscribe button works
    page.goto(link(second, base, "unsubscribe"))
    assert status_of(engine, "carol@example.org") == "active"
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_selector("text=You are unsubscribed")
    assert status_of(engine, "carol@example.org") == "unsubscribed"
    visitor.close()


def test_view_in_browser_page_in_chromium(
    engine: Engine,
    live: tuple[str, Clock],
    browser: sync_api.Browser,
    smtp_server: SMTPServer,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The digest's "View in browser" link, opened as a reader would: the email's headlines,
    nobody's address or tokens, readable on a phone in light and dark; a tampered link 404s."""
    import os

    import lxml.html

    from tests.test_email_quality import MEASURE

    base, _ = live
    seed(engine)
    cli = CLI({**cli_env, "DIGEST_BASE_URL": base})
    assert cli("run", "--now", NOW.isoformat()).exit_code == 0
    data = wait_for_mail(smtp_server, "ada@example.org")
    url = link(data, base, "view")
    html = data.decode("utf-8", "replace").replace("=\r\n", "")
    emailed = [
        " ".join(h.split())
        for h in re.findall(r"<h3[^>]*>\s*<a[^>]*>([^<]+)</a>", html.replace("=3D", "="))
    ]
    assert emailed
    shots = Path(os.environ.get("DIGEST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme
            )
            page = context.new_page()
            response = page.goto(url)
            assert response is not None and response.status == 200
            content = page.content()
            shown = [" ".join(t.split()) for t in page.locator("h3").all_inner_texts()]
            assert shown == emailed
            assert "ada@example.org" not in content and "/unsubscribe/" not in content
            assert "/preferences/" not in content
            assert page.locator("a", has_text="Subscribe").count() >= 1
            found = page.evaluate(MEASURE)
            assert found["scrollWidth"] <= width
            assert found["lowContrast"] == [] and found["shortTargets"] == []
            page.screenshot(path=str(shots / f"view-{width}-{scheme}.png"), full_page=True)
            context.close()
    page = browser.new_page()
    tampered = url[:-6] + ("x" if url[-6] != "x" else "y") + url[-5:]
    response = page.goto(tampered)
    assert response is not None and response.status == 404
    assert "This copy is not available" in page.content()
    assert lxml.html.document_fromstring(page.content()).xpath("//h1")
    page.close()


NEWSROOM_PAGES = (
    "/editor",
    "/editor/articles",
    "/editor/articles?q=rover",
    "/editor/articles/1",
    "/editor/articles/import",
    "/editor/upcoming",
    "/editor/preview",
    "/editor/audit",
)


def _headings_in_order(page: sync_api.Page) -> None:
    levels = page.eval_on_selector_all(
        "main h1, main h2, main h3", "e => e.map(h => +h.tagName[1])"
    )
    assert levels and levels[0] == 1, levels
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), levels


def test_newsroom_in_chromium_at_1280_and_375_light_and_dark(
    engine: Engine,
    live: tuple[str, Clock],
    browser: sync_api.Browser,
    smtp_server: SMTPServer,
    cli_env: dict[str, str],
) -> None:
    from tests.newsroom_helpers import ANN, ANN_PW, add_editors
    from tests.newsroom_run import run_200_with_3_failures

    base, clock = live
    clock.now = NOW + timedelta(minutes=10)
    run_200_with_3_failures(CLI({**cli_env, "DIGEST_BASE_URL": base}), engine, smtp_server)
    add_editors(engine, NOW)
    for width, scheme in ((1280, "light"), (375, "light"), (375, "dark"), (1280, "dark")):
        context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{base}/editor")
        assert "/editor/login" in page.url
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner, f"the sign-in page scrolls sideways at {width} px"
        _headings_in_order(page)
        page.fill("#email", ANN)
        page.fill("#password", ANN_PW)
        page.click("main button[type=submit]")
        page.wait_for_url(f"{base}/editor")
        today = page.locator("tr", has=page.locator("th", has_text="2025-03-25")).first
        assert today.locator("td").all_inner_texts()[:3] == ["197", "3", "0"]
        edition = page.locator("tr", has=page.locator("th", has_text="daily:2025-03-25"))
        assert edition.locator("td").all_inner_texts()[3:5] == ["197", "3"]
        charts = page.locator("figure img")
        assert charts.count() == 4
        assert all(charts.nth(i).evaluate("i => i.naturalWidth > 0") for i in range(4))
        for path in NEWSROOM_PAGES:
            page.goto(f"{base}{path}")
            assert page.url.startswith(f"{base}/editor"), path
            scroll, inner = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            if scroll > inner:
                page.screenshot(path=f"/tmp/wide-{width}-{scheme}.png", full_page=True)
                wide = page.evaluate(
                    "() => [...document.querySelectorAll('body *')]"
                    ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
                    ".slice(0, 6).map(e => e.tagName + '.' + e.className)"
                )
                raise AssertionError(f"{path} scrolls sideways at {width} px ({scheme}): {wide}")
            _headings_in_order(page)
        context.close()
