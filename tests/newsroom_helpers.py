"""Shared by the newsroom tests: editor accounts, signing in, CSRF tokens of pages."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import Engine
from starlette.testclient import TestClient

from digest import editors
from digest.db import session_scope

ANN, BEN = "ann@news.example.org", "ben@news.example.org"
ANN_PW, BEN_PW = "ann's long passphrase", "ben's other passphrase"


def add_editors(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session:
        editors.add_editor(session, ANN, "Ann", ANN_PW, now)
        editors.add_editor(session, BEN, "Ben", BEN_PW, now)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: TestClient, email: str, password: str) -> int:
    page = client.get("/editor/login")
    answer = client.post(
        "/editor/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    return answer.status_code
