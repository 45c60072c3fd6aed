"""RSS and Atom feeds (via feedparser) to records.

Feeds are untrusted: titles and content are reduced to plain text, lengths are bounded, and
any exception while parsing becomes an error for that file, never a crash. An entry without a
date gets the import's ``now`` (feeds often omit dates; the digest needs one to order by), and
an entry without any summary or content gets its title as its only key point.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import feedparser

from digest.ingest.htmltext import (
    MAX_PARAGRAPH_CHARS,
    html_to_line,
    html_to_paragraphs,
    text_to_paragraphs,
    truncate,
)
from digest.ingest.records import (
    MAX_MENTIONS,
    MAX_NAME,
    MAX_SOURCE,
    MAX_TITLE,
    MAX_TOPICS,
    ParseResult,
    is_web_url,
    one_line,
)
from digest.topics import fit_topic


def _text(detail: Any, value: str) -> str:
    """Plain text of a feedparser text construct.

    HTML types are converted, and so is "plain" text holding tags: RSS titles are often
    escaped HTML whatever they declare, and a tag must never reach a digest from a feed.
    """
    kind = str((detail or {}).get("type", "text/plain")).lower()
    if "html" in kind or "<" in value:
        return html_to_line(value)
    return one_line(value)


def _paragraphs(detail: Any, value: str) -> list[str]:
    kind = str((detail or {}).get("type", "text/html")).lower()
    if "html" in kind or "<" in value:
        return html_to_paragraphs(value)
    return text_to_paragraphs(value)


def _date(entry: Any, now: datetime) -> datetime:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if isinstance(parsed, time.struct_time):
            try:
                return datetime(*parsed[:6], tzinfo=UTC)
            except (ValueError, OverflowError):
                continue
    return now


def _topics(entry: Any) -> list[str]:
    names: list[str] = []
    for tag in entry.get("tags") or []:
        term = (tag.get("term") or tag.get("label") or "") if hasattr(tag, "get") else ""
        if isinstance(term, str):
            name = fit_topic(one_line(term))  # a long category is cut, not the feed failed
            if name:
                names.append(name)
    return names[:MAX_TOPICS]


def _image(entry: Any) -> str | None:
    for thumb in entry.get("media_thumbnail") or []:
        url = thumb.get("url") if hasattr(thumb, "get") else None
        if isinstance(url, str) and is_web_url(url):
            return url
    for link in entry.get("links") or []:
        if not hasattr(link, "get"):
            continue
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            url = link.get("href")
            if isinstance(url, str) and is_web_url(url):
                return url
    return None


def _key_points(entry: Any, title: str) -> list[str]:
    points: list[str] = []
    summary = entry.get("summary")
    if isinstance(summary, str) and summary.strip():
        points = _paragraphs(entry.get("summary_detail"), summary)
    if not points:
        for content in entry.get("content") or []:
            value = content.get("value") if hasattr(content, "get") else None
            if isinstance(value, str) and value.strip():
                points = _paragraphs(content, value)
                if points:
                    break
    return points or [truncate(title, MAX_PARAGRAPH_CHARS)]


def _entry_raw(entry: Any, now: datetime, source: str | None) -> tuple[dict[str, Any], str]:
    link = entry.get("link")
    link = link.strip() if isinstance(link, str) else ""
    raw_title = entry.get("title")
    title = _text(entry.get("title_detail"), raw_title) if isinstance(raw_title, str) else ""
    title = truncate(title, MAX_TITLE)
    if not link:
        return {}, "missing link"
    if not is_web_url(link):
        return {}, f"link is not an absolute http(s) URL: {link[:200]!r}"
    if not title:
        return {}, "missing title"
    guid = entry.get("id")
    raw: dict[str, Any] = {
        "url": link,
        "title": title,
        "published_at": _date(entry, now),
        "key_points": _key_points(entry, title),
        "topics": _topics(entry),
        "guid": one_line(guid)[:2048] or None if isinstance(guid, str) else None,
        "source": source,
        "image_url": _image(entry),
        "mentions": _authors(entry),
    }
    return raw, ""


def _authors(entry: Any) -> list[dict[str, Any]]:
    """The entry's authors as person mentions (their page, when given and a web URL)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    authors = entry.get("authors") or ([{"name": entry["author"]}] if entry.get("author") else [])
    for author in authors:
        name = author.get("name") if isinstance(author, dict) else None
        if not isinstance(name, str) or not one_line(name):
            continue
        name = truncate(one_line(name), MAX_NAME)
        if name.casefold() in seen:
            continue
        seen.add(name.casefold())
        href = author.get("href")
        url = href.strip() if isinstance(href, str) and is_web_url(href.strip()) else None
        out.append({"name": name, "kind": "person", "url": url})
    return out[:MAX_MENTIONS]


def parse_feed_bytes(
    data: bytes, file: str, now: datetime, headers: dict[str, str] | None = None
) -> ParseResult:
    """Records from an RSS/Atom document; never raises for bad input."""
    try:
        return _parse_feed(data, file, now, headers)
    except Exception as exc:  # noqa: BLE001  (hostile input must not crash an import)
        return ParseResult.failed(file, f"could not read feed: {type(exc).__name__}: {exc}")


def _parse_feed(
    data: bytes, file: str, now: datetime, headers: dict[str, str] | None
) -> ParseResult:
    parsed = feedparser.parse(data, response_headers=headers or {}, sanitize_html=True)
    entries = list(parsed.get("entries") or [])
    version = parsed.get("version") or ""
    bozo_reason = ""
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        bozo_reason = f"{type(exc).__name__}: {exc}" if exc is not None else "malformed"
    if not version or (bozo_reason and not entries):
        reason = bozo_reason or "unrecognised format (no RSS or Atom root element)"
        return ParseResult.failed(file, f"not an RSS/Atom feed: {reason}")
    result = ParseResult.empty()
    if bozo_reason:
        result.warnings.append(
            f"{file}: feed is not well-formed ({bozo_reason}); entries read anyway"
        )
    if not entries:
        result.warnings.append(f"{file}: feed has no entries")
    feed = parsed.get("feed") or {}
    feed_title = feed.get("title")
    source = (
        truncate(_text(feed.get("title_detail"), feed_title), MAX_SOURCE) or None
        if isinstance(feed_title, str)
        else None
    )
    for n, entry in enumerate(entries, 1):
        where = f"entry {n}"
        raw, reason = _entry_raw(entry, now, source)
        if reason:
            result.errors.append(ParseResult.failed(file, reason, where).errors[0])
            continue
        result.add(raw, file, where, now, feed=True)
    return result
