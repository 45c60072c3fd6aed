"""Article links in real digests (sent through aiosmtpd): followed, they redirect to exactly
the article's URL and count once, in aggregate; forged ones get 404; members are not stored."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from digest.models import Article, ClickCount, MemberClick
from digest.settings import Settings
from digest.tokens import ClickData, TokenSigner
from digest.web import create_app
from tests.conftest import CLI, TEST_SECRET, SMTPServer
from tests.test_web import NOW, Clock, seed

SITE = "https://news.example.org"
CLICK_RE = re.compile(r'href="(https://news\.example\.org/c/[^"]+)"')


def send_digests(cli: CLI, engine: Engine, **env: str) -> None:
    seed(engine)
    result = CLI({**cli.env, **env})("run", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output


def parts(smtp: SMTPServer, to: str) -> tuple[str, str]:
    msg = message_from_bytes(smtp.handler.to(to)[0].data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


def counts(engine: Engine) -> dict[tuple[int, str, str], tuple[int, int]]:
    with Session(engine) as session:
        return {
            (c.article_id, c.edition, c.topic): (c.clicks, c.discounted)
            for c in session.exec(select(ClickCount))
        }


def test_following_a_digest_link_redirects_and_counts_once(
    cli: CLI, engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    send_digests(cli, engine)
    html, text = parts(smtp_server, "ada@example.org")
    links = CLICK_RE.findall(html)
    assert len(links) == 2  # the headline and "Read more" of her one article
    assert "https://archive.example.org/cells" not in html  # every article link counts
    assert "Read more: https://archive.example.org/cells" in text  # text part: plain URLs
    bob_html, _ = parts(smtp_server, "bob@example.org")
    with Session(engine) as session:
        cells = session.exec(select(Article).where(Article.url.endswith("/cells"))).one()  # type: ignore[attr-defined]
    app = create_app(settings, engine, clock=Clock())
    with TestClient(app, base_url=SITE) as client:
        answer = client.get(links[0].removeprefix(SITE), follow_redirects=False)
        assert answer.status_code in (302, 303)
        assert answer.headers["location"] == "https://archive.example.org/cells"
        assert counts(engine) == {}  # counted in memory: no write per click
        app.state.web.clicks.flush()
        assert counts(engine) == {(cells.id, "daily:2025-03-25", "stem cells"): (1, 0)}
        head = client.head(links[1].removeprefix(SITE), follow_redirects=False)
        assert head.status_code == 302
        tampered = links[0][:-3] + ("aaa" if not links[0].endswith("aaa") else "bbb")
        forged = client.get(tampered.removeprefix(SITE), follow_redirects=False)
        assert forged.status_code == 404 and "location" not in forged.headers
        other = TokenSigner("another key").make_click(
            ClickData("daily:2025-03-25", cells.id, "title")
        )
        assert client.get(f"/c/{other}", follow_redirects=False).status_code == 404
        missing = TokenSigner(TEST_SECRET).make_click(ClickData("daily:2025-03-25", 99999, "title"))
        assert client.get(f"/c/{missing}", follow_redirects=False).status_code == 404
    assert counts(engine) == {(cells.id, "daily:2025-03-25", "stem cells"): (1, 0)}
    with Session(engine) as session:
        assert session.exec(select(MemberClick)).all() == []
    assert all(link not in bob_html for link in links)  # another article, another link


def test_two_members_get_the_same_link_for_the_same_article(
    cli: CLI, engine: Engine, smtp_server: SMTPServer
) -> None:
    from datetime import timedelta

    from digest.db import session_scope
    from digest.members import MemberRecord, add_member

    with session_scope(engine) as session:
        add_member(
            session, MemberRecord("cy@example.org", "Cy", ("Stem Cells",)), NOW - timedelta(days=2)
        )
    send_digests(cli, engine)
    ada, _ = parts(smtp_server, "ada@example.org")
    cy, _ = parts(smtp_server, "cy@example.org")
    assert CLICK_RE.findall(ada) == CLICK_RE.findall(cy)  # nothing about the member in them


def test_member_and_text_tracking_only_when_asked(
    cli: CLI, engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    send_digests(cli, engine, DIGEST_TRACK_MEMBER_CLICKS="true", DIGEST_TRACK_TEXT_LINKS="true")
    html, text = parts(smtp_server, "ada@example.org")
    assert "Read more: https://news.example.org/c/" in text
    link = CLICK_RE.findall(html)[0]
    app = create_app(settings.replace(track_member_clicks=True), engine, clock=Clock())
    with TestClient(app, base_url=SITE) as client:
        assert client.get(link.removeprefix(SITE), follow_redirects=False).status_code == 302
    with Session(engine) as session:  # the app's shutdown wrote the counts
        rows = session.exec(select(MemberClick)).all()
    assert [(r.edition, r.clicks) for r in rows] == [("daily:2025-03-25", 1)]
