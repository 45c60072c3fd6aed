"""HTML from feeds to plain-text paragraphs.

Feed content is untrusted markup; we keep only its text (per block: ``<p>``, ``<li>``,
headings, ``<br><br>`` ...) and never store tags, so nothing from a feed can reach a digest as
markup. Scripts, styles and comments are dropped with their content.
"""

from __future__ import annotations

import re
from typing import Any

import lxml.html
from lxml import etree

from digest.ingest.records import multi_line, one_line

MAX_PARAGRAPHS = 10
MAX_PARAGRAPH_CHARS = 2000

_DROP = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "head",
        "title",
        "iframe",
        "object",
        "embed",
        "svg",
        "math",
        "select",
        "button",
        "form",
        "textarea",
    }
)
_BLOCK = frozenset(
    {
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "table",
        "tr",
        "td",
        "th",
        "section",
        "article",
        "header",
        "footer",
        "aside",
        "figure",
        "figcaption",
        "hr",
        "address",
        "main",
        "nav",
        "body",
        "html",
    }
)
_BREAKS = re.compile(r"\n[ \t]*\n\s*")
_TAGS = re.compile(r"<[^>]*>?")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _walk(el: Any, out: list[str]) -> None:
    tag = el.tag if isinstance(el.tag, str) else None
    name = tag.rsplit("}", 1)[-1].lower() if tag else None
    if name is not None and name not in _DROP:
        block = name in _BLOCK
        if name == "br":
            out.append("\n")
        if block:
            out.append("\n\n")
        if el.text:
            out.append(el.text)
        for child in el:
            _walk(child, out)
        if block:
            out.append("\n\n")
    if el.tail:
        out.append(el.tail)


def html_text_blocks(html: str) -> list[str]:
    """The text blocks of ``html`` in order, whitespace collapsed, empties dropped."""
    html = _XML_BAD.sub("", html)
    if not html.strip():
        return []
    pieces: list[str] = []
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
        _walk(root, pieces)
        text = "".join(pieces)
    except (etree.ParserError, ValueError, TypeError):
        text = _TAGS.sub(" ", html)  # unparseable: drop anything tag-like, keep the words
    return [p for p in (" ".join(b.split()) for b in _BREAKS.split(text)) if p]


def html_to_paragraphs(
    html: str, max_paragraphs: int = MAX_PARAGRAPHS, max_chars: int = MAX_PARAGRAPH_CHARS
) -> list[str]:
    """Plain-text paragraphs of ``html``, bounded in number and length (cut at a word)."""
    out: list[str] = []
    for block in html_text_blocks(html)[:max_paragraphs]:
        out.append(truncate(block, max_chars))
    return out


def text_to_paragraphs(
    text: str, max_paragraphs: int = MAX_PARAGRAPHS, max_chars: int = MAX_PARAGRAPH_CHARS
) -> list[str]:
    """Paragraphs of plain text (split on blank lines, wrapped lines joined), bounded."""
    blocks = [" ".join(b.split()) for b in _BREAKS.split(multi_line(text))]
    return [truncate(b, max_chars) for b in blocks if b][:max_paragraphs]


def html_to_line(html: str) -> str:
    """One line of plain text from an HTML snippet (feed titles)."""
    return one_line(" ".join(html_text_blocks(html)))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"
