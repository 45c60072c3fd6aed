"""JSON inputs: one article object, a list of them, JSON Lines, or a JSON Feed document.

JSON Lines is chosen by extension (``.jsonl``/``.ndjson``) or when the whole text is not one
JSON value but starts with one ("Extra data"), so a mis-named export still imports.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from digest.ingest.htmltext import (
    MAX_PARAGRAPH_CHARS,
    html_to_paragraphs,
    text_to_paragraphs,
    truncate,
)
from digest.ingest.records import MAX_TITLE, ParseResult, is_web_url, one_line

JSONFEED_PREFIX = "https://jsonfeed.org/version/"


def decode_text(data: bytes, file: str) -> str | ParseResult:
    """UTF-8 text (a BOM is allowed), or a failed result naming the bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ParseResult.failed(file, f"not UTF-8 text (bad byte at offset {exc.start})")


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"invalid JSON: {exc.msg}"


#: What Python's parser says, in our words, of arrays or objects nested past its recursion
#: limit (a few hundred thousand brackets fit in any upload or feed).
TOO_DEEP = "invalid JSON: arrays or objects nested too deeply"


def parse_json_text(text: str, file: str, now: datetime, jsonlines: bool = False) -> ParseResult:
    """Records from JSON text; malformed JSON is one error with its line and column."""
    if not jsonlines:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                where = f"line {exc.lineno}, column {exc.colno}"
                return ParseResult.failed(file, _json_error(exc), record=where)
            jsonlines = True
        except RecursionError:
            return ParseResult.failed(file, TOO_DEEP)
        else:
            return _parse_document(doc, file, now)
    return _parse_lines(text, file, now)


def _parse_lines(text: str, file: str, now: datetime | None) -> ParseResult:
    """One record per line, split on LF only (CRLF allowed).

    ``str.splitlines`` would also break on U+2028, U+2029, U+0085 and the like, which JSON
    allows unescaped inside strings, so a valid line would be cut in two and later line
    numbers would be wrong.
    """
    result = ParseResult.empty()
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip(" \t\r"):
            continue
        where = f"line {lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            result.errors.append(
                ParseResult.failed(file, f"{_json_error(exc)} (column {exc.colno})", where).errors[
                    0
                ]
            )
            continue
        except RecursionError:
            result.errors.append(ParseResult.failed(file, TOO_DEEP, where).errors[0])
            continue
        result.add(raw, file, where, now)
    return result


def _parse_document(doc: Any, file: str, now: datetime) -> ParseResult:
    if isinstance(doc, dict):
        version = doc.get("version")
        if isinstance(version, str) and version.startswith(JSONFEED_PREFIX):
            return parse_json_feed(doc, file, now)
        result = ParseResult.empty()
        result.add(doc, file, "record 1", now)
        return result
    if isinstance(doc, list):
        result = ParseResult.empty()
        for index, raw in enumerate(doc):
            result.add(raw, file, f"index {index}", now)
        return result
    return ParseResult.failed(file, "expected a JSON object, a list of objects or JSON Lines")


def parse_json_feed(doc: dict[str, Any], file: str, now: datetime) -> ParseResult:
    """Items of a JSON Feed (jsonfeed.org v1/v1.1); an item without a date gets ``now``."""
    items = doc.get("items")
    if not isinstance(items, list):
        return ParseResult.failed(file, "JSON Feed without an 'items' list")
    result = ParseResult.empty()
    feed_title = doc.get("title")
    source = one_line(feed_title)[:500] or None if isinstance(feed_title, str) else None
    for n, item in enumerate(items, 1):
        where = f"item {n}"
        if not isinstance(item, dict):
            result.errors.append(ParseResult.failed(file, "not an object", where).errors[0])
            continue
        raw, reason = _json_feed_item(item, now)
        if reason:
            result.errors.append(ParseResult.failed(file, reason, where).errors[0])
            continue
        raw["source"] = source
        result.add(raw, file, where, now, feed=True)
    return result


def _str(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    return value if isinstance(value, str) else ""


def _json_feed_item(item: dict[str, Any], now: datetime) -> tuple[dict[str, Any], str]:
    url = _str(item, "url").strip() or _str(item, "external_url").strip()
    title = truncate(one_line(_str(item, "title")), MAX_TITLE)
    if not url:
        return {}, "missing url"
    if not title:
        return {}, "missing title"
    if _str(item, "content_html"):
        points = html_to_paragraphs(_str(item, "content_html"))
    elif _str(item, "content_text"):
        points = text_to_paragraphs(_str(item, "content_text"))
    else:
        points = []
    if not points and _str(item, "summary"):
        points = text_to_paragraphs(_str(item, "summary"))
    if not points:
        points = [truncate(title, MAX_PARAGRAPH_CHARS)]
    tags = item.get("tags")
    raw: dict[str, Any] = {
        "url": url,
        "title": title,
        "published_at": _str(item, "date_published") or _str(item, "date_modified") or now,
        "key_points": points,
        "topics": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
        "guid": _str(item, "id") or None,
        "summary": _str(item, "summary") or None,
    }
    image = _str(item, "image") or _str(item, "banner_image")
    if is_web_url(image):
        raw["image_url"] = image
    return raw, ""
