"""The dashboard over HTTP after a real run (200 digests, 3 refused, over aiosmtpd): today's
figures in its tables, a click counted once, every table as CSV with safe cells."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from digest.db import session_scope
from digest.models import Article
from digest.settings import Settings
from digest.web import create_app
from tests.conftest import CLI, SMTPServer
from tests.newsroom_helpers import ANN, ANN_PW, add_editors, sign_in
from tests.newsroom_run import run_200_with_3_failures
from tests.test_web import NOW, Clock

SITE = "https://news.example.org"
CLICK_RE = re.compile(r'href="https://news\.example\.org(/c/[^"]+)"')


def row_of(page: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    match = re.search(
        r'<tr><th scope="row" class="wrap">' + re.escape(first_cell) + r"</th>(.*?)</tr>", page
    )
    assert match, f"no row {first_cell!r}"
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def test_dashboard_after_a_run_with_failures_and_a_click(
    cli: CLI, engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    run_200_with_3_failures(cli, engine, smtp_server)
    add_editors(engine, NOW)
    with session_scope(engine) as session:  # a title a spreadsheet would run
        mars = session.exec(select(Article).where(Article.url.endswith("/mars"))).one()  # type: ignore[attr-defined]
        mars.title = '=HYPERLINK("http://evil.example")'
        session.add(mars)
    clock = Clock(NOW + timedelta(minutes=10))
    app = create_app(settings, engine, clock=clock)
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, ANN, ANN_PW) == 303
        page = client.get("/editor")
        assert page.status_code == 200
        assert row_of(page.text, "2025-03-25")[:3] == ["197", "3", "0"]
        edition = row_of(page.text, "daily:2025-03-25")
        assert edition[:7] == ["daily", "2025-03-25", "200", "197", "3", "0", "0"]
        assert edition[-1] == "0"  # no clicks yet
        assert page.text.count('<img src="data:image/svg+xml;base64,') == 4
        assert "<script" not in page.text

        message = smtp_server.handler.to("reader100@example.org")[0].data.decode()
        link = CLICK_RE.search(message.replace("=\r\n", "").replace("=3D", "="))
        assert link
        answer = client.get(link.group(1), follow_redirects=False)
        assert answer.headers["location"] == "https://archive.example.org/mars"
        page = client.get("/editor")
        assert row_of(page.text, "daily:2025-03-25")[-1] == "1"
        assert row_of(page.text, "Space") == ["1"]

        for name in (
            "deliveries-by-day", "members-by-day", "clicks-by-day", "editions", "top-articles",
            "top-topics", "due-next-24-hours", "articles-waiting", "queue",
        ):  # fmt: skip
            exported = client.get(f"/editor/dashboard/{name}.csv")
            assert exported.status_code == 200, name
            assert exported.headers["content-type"].startswith("text/csv")
            assert f'filename="{name}.csv"' in exported.headers["content-disposition"]
            rows = list(csv.reader(io.StringIO(exported.text)))
            assert len(rows) >= 2, name
        days = list(
            csv.reader(io.StringIO(client.get("/editor/dashboard/deliveries-by-day.csv").text))
        )
        assert days[0] == ["Day", "Sent", "Failed", "Skipped"]
        assert ["2025-03-25", "197", "3", "0"] in days
        top = list(csv.reader(io.StringIO(client.get("/editor/dashboard/top-articles.csv").text)))
        assert top[1][0] == '\'=HYPERLINK("http://evil.example")' and top[1][1] == "1"
        assert client.get("/editor/dashboard/nothing.csv").status_code == 404
        audit = client.get("/editor/audit.csv")
        assert audit.status_code == 200 and "sign-in" in audit.text
    with TestClient(app, base_url=SITE) as anonymous:
        answer = anonymous.get("/editor/dashboard/editions.csv", follow_redirects=False)
        assert answer.status_code == 303


def test_dashboard_shows_the_brake(engine: Engine, settings: Settings) -> None:
    from digest import brake

    add_editors(engine, NOW)
    with session_scope(engine) as session:
        brake.engage(session, "complaint rate 0.5% over 0.3%", NOW)
    app = create_app(settings, engine, clock=Clock())
    with TestClient(app, base_url=SITE) as client:
        assert sign_in(client, ANN, ANN_PW) == 303
        page = client.get("/editor").text
    assert "Sending is paused" in page and "complaint rate 0.5% over 0.3%" in page
    with Session(engine) as session:
        assert brake.state(session).paused
