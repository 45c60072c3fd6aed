"""Topic names: one topic however it is cased or spaced ("Stem Cells" == " stem  cells")."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

from sqlmodel import Session, select

from digest.models import Topic

MAX_TOPIC_LENGTH = 200


def clean_topic_name(name: str) -> str:
    """The display form: NFC, single spaces, no control characters, trimmed."""
    name = unicodedata.normalize("NFC", name)
    name = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in name)
    return " ".join(name.split())


@functools.lru_cache(maxsize=4096)
def topic_slug(name: str) -> str:
    """The identity of a topic: its cleaned name, case-folded."""
    return clean_topic_name(name).casefold()


def unique_topics(names: Iterable[str]) -> list[str]:
    """Cleaned display names, first spelling wins, duplicates (by slug) and blanks dropped."""
    seen: dict[str, str] = {}
    for raw in names:
        name = clean_topic_name(raw)
        if name:
            seen.setdefault(name.casefold(), name)
    return list(seen.values())


def ensure_topics(session: Session, names: Iterable[str]) -> list[Topic]:
    """The Topic rows for ``names``, creating the missing ones (first spelling is kept)."""
    wanted = {topic_slug(n): clean_topic_name(n) for n in unique_topics(names)}
    if not wanted:
        return []
    existing = {
        t.slug: t
        for t in session.exec(select(Topic).where(Topic.slug.in_(wanted)))  # type: ignore[attr-defined]
    }
    for slug, name in wanted.items():
        if slug not in existing:
            topic = Topic(slug=slug, name=name)
            session.add(topic)
            existing[slug] = topic
    session.flush()
    return [existing[slug] for slug in wanted]
