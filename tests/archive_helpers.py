"""What the archive's web tests share: a store with the seed page's article and a few more,
a clock moved by hand, and the app over them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from digest.ingest import upsert_articles
from digest.ingest.records import build_record
from digest.settings import Settings
from tests.conftest import DATA

NOW = datetime(2025, 3, 25, 8, tzinfo=UTC)
SEED = json.loads((DATA / "sample-article.json").read_text())
KEY_POINT_WORD = "immunosuppressants"  # only in the seed's second key point


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


def other(n: int, topics: list[str], mentions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "url": f"https://archive.example.org/other-{n}",
        "title": f"Other story {n}",
        "summary": f"Summary of story {n}",
        "published_at": (NOW - timedelta(days=n + 1)).isoformat(),
        "key_points": [f"Story {n} opens here.", f"Story {n} continues for members."],
        "topics": topics,
        "mentions": mentions,
    }


def seed_archive(engine: Engine, extra: list[dict[str, Any]] | None = None) -> None:
    raws = [
        SEED,
        other(1, ["Stem Cells"], [{"name": "Keio University", "kind": "organisation"}]),
        other(2, ["Space"], [{"name": "Mara Okafor", "kind": "person"}]),
        *(extra or []),
    ]
    records = []
    for raw in raws:
        record, errors = build_record(raw)
        assert record is not None, errors
        records.append(record)
    with Session(engine) as session:
        upsert_articles(session, records, NOW - timedelta(hours=1))
        session.commit()


@contextmanager
def serve(engine: Engine, settings: Settings) -> Iterator[tuple[str, Clock]]:
    """The app under uvicorn on a free loopback port (``base_url`` pointing at it, so links
    in mails open it); yields its base URL and its clock."""
    from digest.web import create_app
    from tests.conftest import free_port, serve_app

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    clock = Clock()
    app = create_app(settings.replace(base_url=base), engine, clock=clock)
    with serve_app(app, port):
        yield base, clock
