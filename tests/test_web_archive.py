"""The archive's pages: the index, an article shaped like the seed page, topics, people and
organisations, following, search; in Chromium at phone and desktop widths, light and dark."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from digest.archive import store
from digest.members.store import get_member
from digest.settings import Settings
from digest.web import create_app
from digest.web.security import MEMBER_COOKIE, MemberSessions
from tests.archive_helpers import KEY_POINT_WORD, NOW, SEED, Clock, other, seed_archive, serve
from tests.conftest import TEST_SECRET, SMTPServer

ARTICLE = "/articles/1"


@pytest.fixture
def app_client(engine: Engine, settings: Settings) -> Iterator[tuple[TestClient, Clock]]:
    seed_archive(engine)
    clock = Clock()
    app = create_app(settings, engine, clock=clock)
    with TestClient(app, base_url="https://news.example.org") as client:
        yield client, clock


def sign_in_as(client: TestClient, engine: Engine, email: str) -> int:
    """A member's session cookie, as the sign-in link sets it (the link is tested on its own)."""
    from digest.members import parse_changes
    from digest.members.store import add_member

    with Session(engine) as session:
        if get_member(session, email) is None:
            record, _ = parse_changes(email, "test", topics=["Space"])
            add_member(session, record, NOW)
            session.commit()
        member = get_member(session, email)
        assert member is not None and member.id is not None
        member_id = member.id
    client.cookies.set(MEMBER_COOKIE, MemberSessions(TEST_SECRET).new(member_id))
    return member_id


def test_a_visitor_sees_the_seed_page_with_the_first_key_point_and_the_invitation(
    app_client: tuple[TestClient, Clock],
) -> None:
    client, _ = app_client
    page = client.get(ARTICLE)
    assert page.status_code == 200
    text = page.text
    assert SEED["title"] in text and SEED["summary"] in text and "24-Mar-2025" in text
    assert SEED["key_points"][0] in text
    assert SEED["key_points"][1] not in text and SEED["key_points"][2] not in text
    assert "2 more key points for members" in text
    assert "Join the club for free to read the whole archive" in text
    assert (
        'href="/resources/hideyuki-okano"' in text and 'href="/resources/keio-university"' in text
    )
    assert "Professor at Keio University School of Medicine." in text
    assert "Private university in Tokyo, Japan." in text
    assert 'href="/topics/stem%20cells"' in text and 'href="/topics/nervous%20system"' in text
    assert f'href="{SEED["url"]}"' in text
    for kind in ("application/atom+xml", "application/feed+json"):
        assert re.search(rf'<link rel="alternate" type="{re.escape(kind)}"', text)


def test_a_signed_in_member_reads_every_key_point_and_a_lapsed_one_does_not(
    app_client: tuple[TestClient, Clock], engine: Engine
) -> None:
    client, _ = app_client
    sign_in_as(client, engine, "ann@example.org")
    text = client.get(ARTICLE).text
    assert all(point in text for point in SEED["key_points"])
    assert "Join the club" not in text and "Sign out" in text
    own = re.search(
        r'href="https://news\.example\.org(/preferences/[^"]+)">Your subscription', text
    )
    assert own, "no link to the member's own preferences"
    prefs = client.get(own.group(1))
    assert prefs.status_code == 200 and "ann@example.org" in prefs.text
    from digest.members.store import set_status

    with Session(engine) as session:
        set_status(session, "ann@example.org", "unsubscribed", "test", NOW)
        session.commit()
    assert SEED["key_points"][1] not in client.get(ARTICLE).text  # the session ended with it
    client.cookies.set(MEMBER_COOKIE, "forged.cookie.value")
    assert SEED["key_points"][1] not in client.get(ARTICLE).text


def test_archive_index_lists_every_article_newest_first_and_filters_and_pages(
    engine: Engine, settings: Settings
) -> None:
    seed_archive(engine, [other(n, ["Space"], []) for n in range(3, 45)])
    with TestClient(create_app(settings, engine, clock=Clock())) as client:
        client.base_url = "https://news.example.org"  # type: ignore[assignment]
        first = client.get("https://news.example.org/archive")
        assert first.status_code == 200
        ids = [int(i) for i in re.findall(r'href="/articles/(\d+)"', first.text)]
        assert ids[0] == 1 and len(ids) == 20  # the seed page is the newest
        assert "45 articles" in first.text and 'rel="next"' in first.text
        last = client.get("https://news.example.org/archive?page=3")
        assert len(re.findall(r'href="/articles/\d+"', last.text)) == 5
        assert client.get("https://news.example.org/archive?page=-4&x=%00").status_code == 200
        space = client.get("https://news.example.org/archive?topic=space")
        assert "Archive: Space" in space.text and "43 articles" in space.text
        assert SEED["title"] not in space.text
        assert client.get("https://news.example.org/archive?topic=nothing").status_code == 404


def test_small_archive_links_every_article_on_its_first_page(
    app_client: tuple[TestClient, Clock],
) -> None:
    client, _ = app_client
    page = client.get("/archive")
    assert sorted(set(re.findall(r'href="(/articles/\d+)"', page.text))) == [
        "/articles/1",
        "/articles/2",
        "/articles/3",
    ]


def test_resource_and_topic_pages_list_their_articles_and_merged_slugs_redirect(
    app_client: tuple[TestClient, Clock], engine: Engine
) -> None:
    client, _ = app_client
    keio = client.get("/resources/keio-university")
    assert keio.status_code == 200
    assert "Keio University" in keio.text and "Private university in Tokyo, Japan." in keio.text
    assert re.findall(r'href="(/articles/\d+)"', keio.text) == ["/articles/1", "/articles/2"]
    assert "Organisation" in keio.text and "Follow Keio University" in keio.text
    assert 'href="/subscribe?follows=keio-university"' in keio.text
    okano = client.get("/resources/hideyuki-okano")
    assert re.findall(r'href="(/articles/\d+)"', okano.text) == ["/articles/1"]
    topic = client.get("/topics/stem%20cells")
    assert topic.status_code == 200 and "<h1>Stem Cells</h1>" in topic.text
    assert re.findall(r'href="(/articles/\d+)"', topic.text) == ["/articles/1", "/articles/2"]
    assert client.get("/topics/nothing%2Fhere").status_code == 404
    assert client.get("/resources/nobody").status_code == 404
    with Session(engine) as session:
        okano_row = store.find_resource(session, "hideyuki-okano")
        keio_row = store.find_resource(session, "keio-university")
        assert okano_row and keio_row
        store.merge(session, okano_row, keio_row, NOW)
        session.commit()
    moved = client.get("/resources/hideyuki-okano", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/resources/keio-university"
    listing = client.get("/resources?q=keio")
    assert "Keio University" in listing.text and "Mara Okafor" not in listing.text


def test_a_signed_in_member_follows_and_unfollows_from_the_pages(
    app_client: tuple[TestClient, Clock], engine: Engine
) -> None:
    client, _ = app_client
    member_id = sign_in_as(client, engine, "bob@example.org")
    page = client.get("/resources/keio-university")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    forged = client.post("/resources/keio-university/follow", data={"action": "follow"})
    assert forged.status_code == 403
    done = client.post(
        "/resources/keio-university/follow",
        data={"action": "follow", "csrf_token": token.group(1)},
    )
    assert done.status_code == 200 and "You follow Keio University." in done.text
    with Session(engine) as session:
        assert [r.slug for r in store.follows_of(session, [member_id])[member_id]] == [
            "keio-university"
        ]
    assert "Following Keio University" in client.get("/resources/keio-university").text
    topic = client.post(
        "/topics/stem%20cells/follow", data={"action": "follow", "csrf_token": token.group(1)}
    )
    assert "You follow Stem Cells." in topic.text
    client.post(
        "/resources/keio-university/follow",
        data={"action": "unfollow", "csrf_token": token.group(1)},
    )
    with Session(engine) as session:
        assert store.follows_of(session, [member_id]) == {}
    client.cookies.clear()
    visitor = client.post("/resources/keio-university/follow", follow_redirects=False)
    assert visitor.status_code == 303 and visitor.headers["location"].startswith("/signin?next=")


def test_the_subscribe_and_preferences_forms_offer_people_with_a_box_to_find_them(
    app_client: tuple[TestClient, Clock], engine: Engine, smtp_server: SMTPServer
) -> None:
    client, _ = app_client
    form = client.get("/subscribe?follows=keio-university")
    assert 'id="resource-filter"' in form.text
    assert re.search(r'name="follows" value="keio-university" checked', form.text)
    assert 'name="follows" value="mara-okafor">' in form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf
    sent = client.post(
        "/subscribe",
        data={"email": "cy@example.org", "follows": "keio-university", "csrf_token": csrf.group(1)},
    )
    assert sent.status_code == 200, sent.text
    (mail,) = smtp_server.handler.to("cy@example.org")
    words = " ".join(mail.message.get_body(("plain",)).get_content().split())
    assert "the daily digest on Keio University." in words
    none = client.post("/subscribe", data={"email": "dee@example.org", "csrf_token": csrf.group(1)})
    assert none.status_code == 400 and "at least one topic or person" in none.text


def test_search_finds_a_key_point_word_on_both_backends_and_hostile_queries_get_200(
    app_client: tuple[TestClient, Clock], engine: Engine
) -> None:
    client, _ = app_client
    found = client.get(f"/search?q={KEY_POINT_WORD}")
    assert found.status_code == 200 and 'href="/articles/1"' in found.text
    assert "1 result for" in found.text
    # a visitor's snippet never shows a members-only key point; a member's does, marked
    assert "<mark>" not in found.text
    assert KEY_POINT_WORD not in re.sub(r"<[^>]+>", "", found.text.split("result for")[1])[60:]
    sign_in_as(client, engine, "eve@example.org")
    member = client.get(f"/search?q={KEY_POINT_WORD}")
    assert f"<mark>{KEY_POINT_WORD}</mark>" in member.text
    okano = client.get("/search?q=okano")
    assert 'href="/articles/1"' in okano.text  # resource names are searched
    hostile = [
        '"', "'", '"unbalanced', "*", "a*", "NEAR", "NEAR(stem cells)", "-", "-stem", "stem -",
        "\x00", "stem\x00cells", "x" * 10_000, "AND OR NOT", "title:stem", "^stem", "stem:*",
        "(((", "<script>alert(1)</script>", "%", "\\", "\u202e", "🙂" * 300,
    ]  # fmt: skip
    for query in hostile:
        response = client.get("/search", params={"q": query})
        assert response.status_code == 200, query
        assert "<script>alert(1)</script>" not in response.text
    many = client.get("/search", params={"q": "story", "page": "99999999"})
    assert many.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/archive",
        ARTICLE,
        "/resources/keio-university",
        "/topics/stem%20cells",
        "/resources",
        "/search?q=stem+cells",
        "/signin",
    ],
)
def test_pages_in_chromium_at_phone_and_desktop_light_and_dark(
    path: str, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.test_email_quality import MEASURE
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed")
    seed_archive(engine)
    shots = Path(os.environ.get("DIGEST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with serve(engine, settings) as (base, _clock), sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        for width in (375, 1280):
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport={"width": width, "height": 900}, color_scheme=scheme
                )
                page = context.new_page()
                response = page.goto(base + path)
                assert response is not None and response.status == 200
                found = page.evaluate(MEASURE)
                assert found["scrollWidth"] <= width, (path, width)
                assert found["lowContrast"] == [], (path, width, scheme, found["lowContrast"])
                headings = found["headings"]
                assert headings[0] == 1 and headings.count(1) == 1
                assert all(b - a <= 1 for a, b in zip(headings, headings[1:], strict=False))
                name = quote(path, safe="").replace("%", "_")
                page.screenshot(path=str(shots / f"{name}-{width}-{scheme}.png"), full_page=True)
                context.close()
        browser.close()


def test_the_seed_page_in_chromium_and_its_resource_links(
    engine: Engine, settings: Settings
) -> None:
    """Every part of the seed page is on the article page, and each resource link opens a
    page listing the article."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.test_web_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed")
    seed_archive(engine)
    with serve(engine, settings) as (base, _clock), sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        page.goto(base + "/archive")
        page.click(f"text={SEED['title']}")
        page.wait_for_url(base + ARTICLE)
        body = " ".join(page.inner_text("main").split())
        for part in (SEED["title"], SEED["summary"], "24-Mar-2025", "Key points",
                     " ".join(SEED["key_points"][0].split()), "Mentioned in this article",
                     "Hideyuki Okano", "Professor at Keio University School of Medicine.",
                     "Keio University", "Private university in Tokyo, Japan.", "Stem Cells",
                     "Nervous System"):  # fmt: skip
            assert part in body, part
        for name, slug in (
            ("Hideyuki Okano", "hideyuki-okano"),
            ("Keio University", "keio-university"),
        ):
            page.goto(base + ARTICLE)
            page.click(f"dl.mentions a:text-is('{name}')")
            page.wait_for_url(f"{base}/resources/{slug}")
            assert page.locator("h1").inner_text() == name
            assert page.locator(f"a[href='{ARTICLE}']").count() == 1
        page.goto(base + ARTICLE)
        page.click("ul.tags a:text-is('Stem Cells')")
        assert page.locator(f"a[href='{ARTICLE}']").count() == 1
        browser.close()


def test_hostile_names_are_text_on_the_pages(engine: Engine, settings: Settings) -> None:
    hostile = {"name": "<script>alert(1)</script>", "description": '"><img src=x onerror=1>'}
    seed_archive(engine, [other(7, ["<b>Bold</b>"], [hostile])])
    with TestClient(create_app(settings, engine, clock=Clock())) as client:
        base = "https://news.example.org"
        listing = client.get(f"{base}/resources")
        slug = re.search(r'href="/resources/(script[^"]*)"', listing.text)
        assert slug, listing.text
        for path in (f"/resources/{slug.group(1)}", "/articles/4", "/archive", "/resources"):
            text = client.get(base + path).text
            assert "<script>alert(1)</script>" not in text and "<img src=x" not in text
            assert "<b>Bold</b>" not in text


def test_people_named_only_in_held_or_retracted_articles_are_not_published(
    engine: Engine, settings: Settings
) -> None:
    # an embargoed article's new names, or a retracted one's, stay off every public page
    from datetime import timedelta

    from digest import catalog

    held = {"name": "Embargo Person", "description": "Named before the embargo ends."}
    gone = {"name": "Retracted Person", "description": "Named in a retracted story."}
    seed_archive(engine, [other(7, ["Space"], [held]), other(8, ["Space"], [gone])])
    clock = Clock()
    with Session(engine) as session:
        catalog.hold_article(session, 4, NOW + timedelta(days=1), NOW)
        catalog.retract_article(session, 5, NOW)
        session.commit()
    with TestClient(
        create_app(settings, engine, clock=clock), base_url="https://news.example.org"
    ) as client:
        pages = ["/resources", "/resources?q=person", "/sitemap.xml", "/subscribe"]
        for path in pages:
            text = client.get(path).text
            assert "embargo-person" not in text and "Embargo Person" not in text, path
            assert "retracted-person" not in text and "Retracted Person" not in text, path
        for slug in ("embargo-person", "retracted-person"):
            for path in (f"/resources/{slug}", f"/resources/{slug}/feed.atom"):
                answer = client.get(path)
                assert answer.status_code == 404, path
                assert "Named" not in answer.text
        for word in ("embargo", "retracted"):
            assert "0 results for" in client.get(f"/search?q={word}").text
        clock.now = NOW + timedelta(days=1, minutes=1)  # the hold is over
        assert "Embargo Person" in client.get("/resources").text
        assert "/resources/embargo-person" in client.get("/sitemap.xml").text
        assert "1 result for" in client.get("/search?q=embargo").text
        page = client.get("/resources/embargo-person")
        assert page.status_code == 200 and "Named before the embargo ends." in page.text
        assert client.get("/resources/retracted-person").status_code == 404
