"""Markdown articles: YAML front matter for the fields, the body's paragraphs as key points.

Editors write one article per file; key points in the front matter win over the body, so a
file can carry notes in its body without publishing them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import frontmatter
import yaml
from frontmatter.default_handlers import YAMLHandler

from digest.ingest.records import ParseResult

_BLANK_LINES = re.compile(r"\n[ \t]*\n")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as strings.

    PyYAML would build ``published_at: 2026-13-01`` into a date itself and fail with a bare
    "month must be in 1..12"; as a string it reaches record validation, which names the field.
    """

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_FrontMatterLoader.add_constructor(_TIMESTAMP, yaml.SafeLoader.construct_yaml_str)


class _FrontMatterHandler(YAMLHandler):
    def load(self, fm: str, **kwargs: object) -> Any:
        return yaml.load(fm, Loader=_FrontMatterLoader)


def body_paragraphs(body: str) -> list[str]:
    """Paragraphs split on blank lines; heading lines dropped, wrapped lines joined by a space."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    for block in _BLANK_LINES.split(body):
        lines = [ln.strip() for ln in block.split("\n")]
        text = " ".join(ln for ln in lines if ln and not ln.startswith("#"))
        if text:
            out.append(text)
    return out


def parse_markdown_text(text: str, file: str, now: datetime | None = None) -> ParseResult:
    """One record from a Markdown file with front matter, or the reason it was refused.

    ``now`` is the import clock: a date more than a day after it is a field error.
    """
    where = "record 1"
    if not text.lstrip("\ufeff").startswith("---"):
        return ParseResult.failed(file, "no YAML front matter (the file must start with '---')")
    try:
        meta, body = frontmatter.parse(text.lstrip("\ufeff"), handler=_FrontMatterHandler())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        return ParseResult.failed(file, f"invalid YAML front matter{at}: {problem}", where)
    except Exception as exc:  # noqa: BLE001  (python-frontmatter raises assorted types)
        return ParseResult.failed(file, f"invalid front matter: {exc}", where)
    if not isinstance(meta, dict):
        return ParseResult.failed(file, "front matter must be a mapping of fields", where)
    raw: dict[str, Any] = dict(meta)
    if raw.get("key_points") is None:
        raw["key_points"] = body_paragraphs(body)
    result = ParseResult.empty()
    result.add(raw, file, where, now)
    return result
