"""An article's key points cut to a short summary for the digest: whole sentences, few words.

A digest of twenty articles with every key point in full is twenty screens on a phone; the
reader wants the gist and a way to the article. ``key_point_summary`` keeps the first
sentences of the key points, in order, up to a number of words, and says whether it cut
anything (the template then shows that a "Read more" leads to the rest). Pure and cached:
the same article is summarised for every member who gets it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

#: A sentence ends at . ! ? (closing quotes or brackets may follow) before white space and an
#: upper-case letter, digit or opening quote: "e.g. this" and "3.5 mm" stay one sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])")
_WS = re.compile(r"\s+")
ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class Summary:
    """What a card shows of the key points: paragraphs, and whether anything was left out."""

    paragraphs: tuple[str, ...]
    cut: bool


def sentences(text: str) -> list[str]:
    """``text`` split into sentences (white space collapsed)."""
    text = _WS.sub(" ", text).strip()
    if not text:
        return []
    out, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        out.append(text[start : match.start()] + match.group(0).strip())
        start = match.end()
    out.append(text[start:])
    return [s for s in out if s]


@functools.lru_cache(maxsize=8192)
def key_point_summary(points: tuple[str, ...], words: int) -> Summary:
    """The key points cut to at most ``words`` words at a sentence boundary; ``0``: in full.

    Whole sentences are taken in order while they fit, across key points, as one paragraph.
    A first sentence longer than the limit is cut at a word, with an ellipsis: a summary is
    never empty and never longer than ``words``.
    """
    points = tuple(p for p in (_WS.sub(" ", p).strip() for p in points) if p)
    if words <= 0:
        return Summary(points, False)
    taken: list[str] = []
    count = 0
    every = [s for p in points for s in sentences(p)]
    for sentence in every:
        size = len(sentence.split(" "))
        if count + size > words:
            break
        taken.append(sentence)
        count += size
    if not taken and every:
        head = every[0].split(" ")[:words]
        text = " ".join(head).rstrip(",;:-\u2013\u2014") + ELLIPSIS
        return Summary((text,), True)
    return Summary((" ".join(taken),) if taken else (), len(taken) < len(every))
