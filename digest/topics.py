"""Topic names: one topic however it is cased or spaced ("Stem Cells" == " stem  cells").

Pure rules only; topic rows are read and created by ``digest.catalog``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

#: Characters in a topic's name and in its slug (both VARCHAR(200) columns). Case folding
#: can lengthen a name ("ß" -> "ss", "ﬃ" -> "ffi"), so the slug is checked on its own.
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


def _shown(name: str) -> str:
    return repr(name) if len(name) <= 40 else f"{name[:40]!r}…"


def topic_length_problem(name: str) -> str | None:
    """Why ``name`` cannot be stored (its display form or its slug is over the column's
    limit), or None; the one check every way in shares, so no backend meets an over-long value.
    """
    clean = clean_topic_name(name)
    if len(clean) > MAX_TOPIC_LENGTH:
        return f"topic longer than {MAX_TOPIC_LENGTH} characters: {_shown(clean)}"
    folded = len(topic_slug(clean))
    if folded > MAX_TOPIC_LENGTH:
        return (
            f"topic longer than {MAX_TOPIC_LENGTH} characters once case-folded "
            f"({folded}, as 'ß' becomes 'ss'): {_shown(clean)}"
        )
    return None


def fit_topic(name: str) -> str:
    """The cleaned name cut to the longest prefix whose name and slug both fit.

    For sources that must not fail over a long label (feed categories).
    """
    clean = clean_topic_name(name)
    length = 0
    for end, ch in enumerate(clean):
        length += len(ch.casefold())  # case folding maps each character on its own
        if end >= MAX_TOPIC_LENGTH or length > MAX_TOPIC_LENGTH:
            clean = clean[:end]
            break
    while clean and topic_length_problem(clean):  # re-cleaning a cut may differ; be sure
        clean = clean[:-1]
    return clean_topic_name(clean)


def unique_topics(names: Iterable[str]) -> list[str]:
    """Cleaned display names, first spelling wins, duplicates (by slug) and blanks dropped."""
    seen: dict[str, str] = {}
    for raw in names:
        name = clean_topic_name(raw)
        if name:
            seen.setdefault(name.casefold(), name)
    return list(seen.values())
