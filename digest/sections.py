"""MJML -> inlined HTML, compiled once per *shape* of each section instead of once per member.

A digest is a frame (head, body wrapper) around top-level ``mj-section``s, and both stages
that cost anything treat those sections independently: mjml-python compiles each top-level
child on its own, and premailer styles an element from its own tag, classes and ancestors
only. So the final page is ``head + compiled(section 1) + ... + compiled(section n) + tail``,
and a section compiled once can be reused wherever it appears.

Reuse goes further than identical sections: a section's *shape* is its MJML with every run of
text and every link-ish attribute value (``href``, ``src``, ``alt``, ``title``, ``id``) of the
HTML inside ``mj-text`` & co. replaced by a numbered marker. Two article cards with the same
structure share one compile; each member's page is the compiled shapes with the markers
swapped for that member's text and URLs, serialized by lxml exactly as premailer would have
serialized them. Everything is keyed on source text, so an edited article or template never
reuses a stale compile.

The result must be byte-for-byte what compiling the whole page gives. The assumptions above
hold for the built-in templates and for any template that keeps to plain class/tag/descendant
CSS; to stay correct whatever an operator's template does, a page that needed any new compile
is also compiled whole and compared. On the first difference the cache turns itself off for
good (with a warning saying why) and every page is compiled whole: slower, never wrong.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree
from mjml import mjml2html

from digest.content import Personal

log = logging.getLogger(__name__)

#: MJML components whose content is HTML passed through to the page.
ENDING_TAGS = frozenset(
    {
        "mj-text", "mj-button", "mj-table", "mj-raw", "mj-navbar-link", "mj-social-element",
        "mj-accordion-title", "mj-accordion-text",
    }
)  # fmt: skip
#: Attributes of the HTML inside ending tags that are made slots (values differ per article:
#: links, images, and the ids in-message anchors lead to).
SLOT_ATTRIBUTES = frozenset({"href", "src", "alt", "title", "id"})
#: HTML elements whose content is not parsed as text with entities.
RAW_TEXT = frozenset({"script", "style", "title", "textarea", "xmp", "plaintext"})

_TOKEN_RE = re.compile(
    r"""<!--.*?-->|<!\[CDATA\[.*?\]\]>|<![^>]*>"""
    r"""|<(/?)([A-Za-z][\w:.-]*)((?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*)"""
    r"""\s*(/?)>""",
    re.DOTALL,
)
_ATTR_RE = re.compile(r"""([^\s"'>/=]+)(?:(\s*=\s*)("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_MJ_TAG_RE = re.compile(r"<(/?)(mj-[a-z-]+)\b")
_BODY_OPEN_RE = re.compile(r"<mj-body\b")
_WS_RE = re.compile(r"\s*")
_SELECTOR_RE = re.compile(r"([^{}]+)\{")
_STYLE_RE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_HTML_PARSER = etree.HTMLParser()


class Unsupported(Exception):
    """This page is outside what section reuse can reproduce exactly: compile it whole."""


class InsertsAltered(ValueError):
    """The template did not print the section stand-ins as they were given: render it again
    with the sections themselves."""


# ------------------------------------------------------------------ lxml-exact serialization


_TEXT_SPECIAL_RE = re.compile(r'[&<>"]')
_PLAIN_URL_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()@/:=?;#%,+]*")  # nothing libxml2 escapes


def text_html(raw: str) -> str:
    """Source text (entities and all) as lxml's HTML serializer writes it after parsing."""
    if raw.isprintable() and not _TEXT_SPECIAL_RE.search(raw):
        return raw  # nothing to parse or escape: lxml writes it back as it is (tested)
    return _text_html(raw)


@lru_cache(maxsize=8192)
def _text_html(raw: str) -> str:
    root = etree.fromstring(f"<html><body><p>{raw}</p></body></html>", _HTML_PARSER)
    p = root.find("body/p")
    if p is None or len(p) or p.text is None:
        raise Unsupported(f"text does not parse as plain text: {raw[:60]!r}")
    element = etree.Element("p")
    try:
        element.text = p.text
    except ValueError as exc:  # characters lxml will not hold: let the whole compile decide
        raise Unsupported(str(exc)) from exc
    out = etree.tostring(element, method="html", encoding="utf-8").decode("utf-8")
    return out[3:-4]


def attr_html(tag: str, name: str, raw: str) -> str:
    """``name="value"`` for a source attribute value, as lxml parses and writes it back."""
    if raw[:1] == '"' and raw[-1:] == '"' and _PLAIN_URL_RE.fullmatch(raw, 1, len(raw) - 1):
        return f"{name}={raw}"  # nothing to decode or escape (tested against lxml)
    return _attr_html(tag, name, raw)


@lru_cache(maxsize=8192)
def _attr_html(tag: str, name: str, raw: str) -> str:
    quoted = raw if raw[:1] in "\"'" else f'"{raw}"'
    source = f"<html><body><{tag} {name}={quoted}></{tag}></body></html>"
    root = etree.fromstring(source, _HTML_PARSER)
    element = root.find(f"body/{tag}")
    if element is None or element.get(name) is None:
        raise Unsupported(f"attribute does not parse: {name}={raw[:60]!r}")
    clean = etree.Element(tag)
    try:
        clean.set(name, element.get(name))
    except ValueError as exc:
        raise Unsupported(str(exc)) from exc
    out = etree.tostring(clean, method="html", encoding="utf-8").decode("utf-8")
    start = len(tag) + 2
    return out[start : out.index(">", start)]


# ------------------------------------------------------------------ splitting


def split_body(source: str) -> tuple[str, list[str], str]:
    """(frame before the sections, the top-level children of mj-body, frame after).

    A top-level component never contains another of its own kind (MJML's nesting rules), so
    each one ends at the first closing tag of its name.
    """
    return split_sections(source, body_start(source))


def body_start(source: str) -> int:
    """Where mj-body's content starts: after its start tag."""
    for match in _BODY_OPEN_RE.finditer(source):
        end = source.find(">", match.end())
        if end > 0 and source[end - 1] != "/":  # not the defaults inside mj-attributes
            return end + 1
    raise Unsupported("no mj-body")


def split_sections(source: str, opened: int) -> tuple[str, list[str], str]:
    """``split_body`` from ``opened``, the end of the mj-body start tag."""
    sections: list[str] = []
    pos = sections_from(source, opened, sections)
    if pos >= len(source):
        raise Unsupported("mj-body is not closed")
    return source[:opened], sections, source[pos:]


def sections_from(source: str, pos: int, sections: list[str]) -> int:
    """Append the top-level sections from ``pos`` on; where they stop (``</mj-body`` or the
    end of ``source``)."""
    size = len(source)
    pos = _WS_RE.match(source, pos).end()  # type: ignore[union-attr]
    while pos < size and not source.startswith("</mj-body", pos):
        match = _MJ_TAG_RE.match(source, pos)
        if match is None or match.group(1):
            raise Unsupported(f"unexpected content in mj-body at {pos}: {source[pos : pos + 40]!r}")
        end = source.find(">", match.end())
        if end < 0:
            raise Unsupported("unterminated tag")
        if source[end - 1] != "/":
            closer = f"</{match.group(2)}>"
            end = source.find(closer, end)
            if end < 0:
                raise Unsupported(f"{match.group(2)} is not closed")
            end += len(closer) - 1
        sections.append(source[pos : end + 1])
        pos = _WS_RE.match(source, end + 1).end()  # type: ignore[union-attr]
    return pos


@dataclass(frozen=True)
class _Slot:
    kind: str  # "text" | "attr"
    raw: str  # source text core, or the attribute value as written (quotes included)
    tag: str = ""
    name: str = ""


def abstract(section: str, marker: Callable[[int], str]) -> tuple[str, tuple[_Slot, ...]]:
    """The section's shape (slots replaced by markers) and the slot values, in order."""
    out: list[str] = []
    slots: list[_Slot] = []
    mj_stack: list[str] = []
    raw_text: str | None = None
    pos = 0
    for match in _TOKEN_RE.finditer(section):
        text = section[pos : match.start()]
        if "<" in text or ">" in text:
            raise Unsupported("stray angle bracket in a section")
        inside = bool(mj_stack) and mj_stack[-1] in ENDING_TAGS and raw_text is None
        if inside and text.strip():
            core = text.strip()
            lead = text[: len(text) - len(text.lstrip())]
            trail = text[len(text.rstrip()) :]
            out += [lead, marker(len(slots)), trail]
            slots.append(_Slot("text", core))
        else:
            out.append(text)
        pos = match.end()
        token = match.group(0)
        name = (match.group(2) or "").lower()
        if not name:  # comment, doctype, CDATA: literal
            out.append(token)
            continue
        closing, selfclosing = bool(match.group(1)), bool(match.group(4))
        if name.startswith("mj-"):
            if closing:
                if not mj_stack or mj_stack[-1] != name:
                    raise Unsupported(f"unbalanced </{name}>")
                mj_stack.pop()
            elif not selfclosing:
                mj_stack.append(name)
            out.append(token)
            continue
        if raw_text is not None:
            if closing and name == raw_text:
                raw_text = None
            out.append(token)
            continue
        if not closing and name in RAW_TEXT:
            raw_text = name
        if closing or not (mj_stack and mj_stack[-1] in ENDING_TAGS) or not match.group(3):
            out.append(token)
            continue
        # a start tag of HTML content: make link-ish attribute values slots
        attrs = match.group(3)
        rebuilt: list[str] = []
        apos = 0
        for attr in _ATTR_RE.finditer(attrs):
            value = attr.group(3)
            if value is None or attr.group(1).lower() not in SLOT_ATTRIBUTES:
                continue
            rebuilt.append(attrs[apos : attr.start(3)])
            rebuilt.append(f'"{marker(len(slots))}"')
            slots.append(_Slot("attr", value, name, attr.group(1).lower()))
            apos = attr.end(3)
        rebuilt.append(attrs[apos:])
        out.append(token[: match.start(3) - match.start()] + "".join(rebuilt))
        out.append(token[match.end(3) - match.start() :])
    tail = section[pos:]
    if "<" in tail or ">" in tail:
        raise Unsupported("stray angle bracket in a section")
    out.append(tail)
    return "".join(out), tuple(slots)


# ------------------------------------------------------------------ compiled pieces


@dataclass(frozen=True)
class _Fill:
    index: int
    kind: str
    tag: str = ""
    name: str = ""


_Part = str | _Fill
#: What a stand-in stands for: a section, or a run of sections.
Insert = str | tuple[str, ...]


def _joined(insert: Insert) -> str:
    return insert if isinstance(insert, str) else "".join(insert)


@dataclass(frozen=True)
class _Shape:
    parts: tuple[_Part, ...]
    head_key: str  # what this section adds to the page head


def _split_compiled(fragment: str, shape_slots: tuple[_Slot, ...], pattern: re.Pattern[str],
                    index_of: Callable[[str], int]) -> tuple[_Part, ...]:  # fmt: skip
    """Cut a compiled section at its markers; each must appear once, where it was put."""
    parts: list[_Part] = []
    seen: set[int] = set()
    pos = 0
    for match in pattern.finditer(fragment):
        i = index_of(match.group(0))
        if i in seen or i >= len(shape_slots):
            raise Unsupported("a marker was copied by the compiler")
        seen.add(i)
        slot = shape_slots[i]
        lt = fragment.rfind("<", 0, match.start())
        gt = fragment.rfind(">", 0, match.start())
        in_tag = lt > gt
        if slot.kind == "text":
            if in_tag:
                raise Unsupported("text ended up inside a tag")
            parts.append(fragment[pos : match.start()])
            parts.append(_Fill(i, "text"))
            pos = match.end()
            continue
        if not in_tag:
            raise Unsupported("an attribute value ended up as text")
        needle = f'{slot.name}="{match.group(0)}"'
        begin = match.start() - len(slot.name) - 2
        if fragment[begin : match.end() + 1] != needle:
            raise Unsupported(f"attribute {slot.name} was rewritten by the compiler")
        parts.append(fragment[pos:begin])
        parts.append(_Fill(i, "attr", slot.tag, slot.name))
        pos = match.end() + 1
    if len(seen) != len(shape_slots):
        raise Unsupported("a marker was dropped by the compiler")
    parts.append(fragment[pos:])
    return tuple(p for p in parts if p != "")


def _fill(parts: tuple[_Part, ...], slots: tuple[_Slot, ...]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif part.kind == "text":
            out.append(text_html(slots[part.index].raw))
        else:
            out.append(attr_html(part.tag, part.name, slots[part.index].raw))
    return "".join(out)


@dataclass(frozen=True)
class _Masked:
    """A section with the member's values replaced by ``\x01<n>\x01`` marks."""

    source: str
    used: tuple[tuple[str, str], ...]  # (mark, value)


def _unmask(slot: _Slot, used: tuple[tuple[str, str], ...]) -> _Slot:
    raw = slot.raw
    if "\x01" not in raw:
        return slot
    for mark, value in used:
        raw = raw.replace(mark, value)
    return _Slot(slot.kind, raw, slot.tag, slot.name)


def _fill_personal(parts: tuple[str | _Slot, ...], used: tuple[tuple[str, str], ...]) -> str:
    """A prefilled personal section with this member's values in its remaining slots."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        raw = _unmask(part, used).raw
        out.append(text_html(raw) if part.kind == "text" else attr_html(part.tag, part.name, raw))
    return "".join(out)


def _unsafe_css(head: str) -> str | None:
    """Why the head's CSS would style a section by its neighbours or its link values."""
    for css in _STYLE_RE.findall(head):
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
        for selector in _SELECTOR_RE.findall(css):
            selector = selector.strip()
            if selector.startswith("@"):
                continue
            if re.search(r"[+~]", re.sub(r"\[[^\]]*\]|\([^)]*\)", "", selector)):
                return f"sibling selector {selector!r}"
            if re.search(r"\[\s*(href|src|alt|title|id)\b", selector, re.IGNORECASE):
                return f"attribute selector {selector!r}"
            # ids are slots; MJML's own "#outlook a" names no element of a section
            if re.search(r"#(?!outlook\b)-?[A-Za-z_]", re.sub(r"\[[^\]]*\]", "", selector)):
                return f"id selector {selector!r}"
    return None


class SectionCache:
    """Compiled sections by shape, and compiled frames, for one templates directory.

    ``compile_page`` is the whole-page pipeline (MJML then CSS inlining); this class only ever
    reproduces its output. Thread-safe; bounded (least recently used shapes are dropped).
    """

    def __init__(
        self,
        compile_page: Callable[[str], str],
        *,
        max_shapes: int = 2048,
        max_sections: int = 4096,
        verify: bool = True,
    ) -> None:
        self.compile_page = compile_page
        self.verify = verify
        nonce = secrets.token_hex(4)  # content cannot guess and forge a marker
        self._nonce = nonce
        self._insert_re = re.compile(rf'<mj-dginsert data-n="{nonce}" data-i="(\d+)" />')
        self._insert_head = f'<mj-dginsert data-n="{nonce}" data-i="'
        self._prefix = f"zzsc{nonce}s"
        self._pattern = re.compile(rf"zzsc{nonce}s(\d+)zz")
        self._cut = f"<!--dgcut{nonce}-->"
        self._shapes: OrderedDict[str, _Shape] = OrderedDict()
        self._masked: OrderedDict[str, tuple[str, tuple[_Slot, ...]]] = OrderedDict()
        # a member's own sections (greeting, footer) by their masked source: the compiled
        # section with every slot but the member's values already written out
        self._prefilled: OrderedDict[str, tuple[tuple[str | _Slot, ...], str]] = OrderedDict()
        self._sections: OrderedDict[str, tuple[str, str]] = OrderedDict()  # source -> html, head
        self._frames: dict[tuple[str, str, tuple[str, ...]], tuple[str, str]] = {}
        self._max_shapes, self._max_sections = max_shapes, max_sections
        self._lock = threading.Lock()
        self.disabled: str | None = None  # why reuse was turned off, if it was
        self._opens: tuple[str, ...] = ()
        self.compiles = 0  # whole or partial compiles run: lets tests and benchmarks see reuse

    def _marker(self, i: int) -> str:
        return f"{self._prefix}{i}zz"

    def insert_tag(self, i: int) -> str:
        """A stand-in for ``inserts[i]`` of :meth:`html_parts`: a top-level element of its own,
        for one section or a run of them (a tuple: a page's cards, its contents lines).

        A renderer that already holds a section's MJML (a cached article card) prints this
        instead, so the page's source stays small and the section is looked up by the very
        string object it was cached under.
        """
        return f'<mj-dginsert data-n="{self._nonce}" data-i="{i}" />'

    def expand(self, source: str, inserts: Sequence[Insert]) -> str:
        """The source with every stand-in replaced by its section: the page as written."""
        if not inserts:
            return source
        found = [int(m.group(1)) for m in self._insert_re.finditer(source)]
        if found != list(range(len(inserts))):
            raise InsertsAltered("the template changed or dropped a section stand-in")
        return self._insert_re.sub(lambda m: _joined(inserts[int(m.group(1))]), source)

    def html(self, source: str, personal: Sequence[str] = ()) -> str:
        """Exactly ``compile_page(source)``, from cached pieces where they exist."""
        return "".join(self.html_parts(source, personal))

    def html_parts(
        self, source: str, personal: Sequence[str] = (), inserts: Sequence[Insert] = ()
    ) -> tuple[str, ...]:
        """``compile_page(source)`` as the pieces it was assembled from (head, sections, tail).

        Reused pieces are the same string objects every time, so what is derived from them
        downstream (quoted-printable encoding) can be cached on them too. ``personal`` are
        strings as they appear in ``source`` that differ from member to member (their name,
        email, links): a section holding them is recognised by the rest of its text, so its
        shape is not worked out again for every member. Only a hint: any strings are safe.
        ``inserts`` are the sections behind :meth:`insert_tag` stand-ins in ``source``; raises
        ``InsertsAltered`` if the stand-ins are not all there, once each, in order.
        """
        if self.disabled is not None:
            self.compiles += 1
            return (Personal(self.compile_page(self.expand(source, inserts))),)
        try:
            parts, fresh = self._assemble(source, personal, inserts)
        except Unsupported as exc:
            log.debug("page compiled whole: %s", exc)
            self.compiles += 1
            # one member's whole page; expand raises InsertsAltered if stand-ins went missing
            return (Personal(self.compile_page(self.expand(source, inserts))),)
        if fresh and self.verify:
            whole = self.compile_page(self.expand(source, inserts))
            self.compiles += 1
            page = "".join(parts)
            if whole != page:
                at = next(
                    (i for i, (a, b) in enumerate(zip(whole, page, strict=False)) if a != b),
                    min(len(whole), len(page)),
                )
                self.disabled = (
                    f"assembled page differs from the whole compile at character {at}: "
                    f"{whole[max(0, at - 40) : at + 40]!r} vs {page[max(0, at - 40) : at + 40]!r}"
                )
                log.warning(
                    "section reuse turned off, every page is compiled whole (slower): %s",
                    self.disabled,
                )
                return (Personal(whole),)
        return parts

    def _assemble(
        self, source: str, personal: Sequence[str], inserts: Sequence[Insert]
    ) -> tuple[tuple[str, ...], bool]:
        if inserts:
            frame_open, sections, frame_close = self._split_inserted(source, inserts)
        elif 'data-n="' + self._nonce in source:
            raise Unsupported("a section stand-in without its section")
        else:
            frame_open, sections, frame_close = split_sections(source, self._body_start(source))
        pieces: list[tuple[str, str] | None] = []
        missing: dict[str, tuple[tuple[_Slot, ...], list[int]]] = {}
        with self._lock:
            for section in sections:
                hit = self._sections.get(section)
                if hit is not None:
                    self._sections.move_to_end(section)
                pieces.append(hit)
        fresh = False
        # longest first, so a value inside another (a name in an address) is masked last
        values = sorted({v for v in personal if len(v) >= 3}, key=len, reverse=True)
        abstracted: dict[int, tuple[str, tuple[_Slot, ...], _Masked | None]] = {}
        for i, section in enumerate(sections):
            if pieces[i] is not None:
                continue
            masked = self._mask(section, values)
            if masked is not None:
                with self._lock:
                    known = self._prefilled.get(masked.source)
                if known is not None:
                    pieces[i] = (Personal(_fill_personal(known[0], masked.used)), known[1])
                    continue
            shape_src, slots = self._abstract(section, masked)
            abstracted[i] = (shape_src, slots, masked)
            with self._lock:
                known_shape = shape_src in self._shapes
            if not known_shape:
                missing.setdefault(shape_src, (slots, []))[1].append(i)
        if missing:
            fresh = True
            self._compile_shapes(frame_open, frame_close, missing)
        for i, (shape_src, slots, masked) in abstracted.items():
            with self._lock:
                shape = self._shapes.get(shape_src)
            if shape is None:
                raise Unsupported("shape evicted while in use")
            html = _fill(shape.parts, slots)
            if masked is not None:
                pieces[i] = (Personal(html), shape.head_key)
                self._remember_personal(masked, shape)
                continue  # one member's: would only push shared sections out of the cache
            piece = (html, shape.head_key)
            pieces[i] = piece
            with self._lock:
                self._sections[sections[i]] = piece
                while len(self._sections) > self._max_sections:
                    self._sections.popitem(last=False)
        done = [p for p in pieces if p is not None]
        head_keys = tuple(dict.fromkeys(p[1] for p in done))
        frame_key = (frame_open, frame_close, head_keys)
        with self._lock:
            frame = self._frames.get(frame_key)
        if frame is None:
            fresh = True
            frame = self._compile_frame(frame_open, frame_close, sections, done)
            with self._lock:
                if len(self._frames) > 256:
                    self._frames.clear()
                self._frames[frame_key] = frame
        head, tail = frame
        return (head, *(p[0] for p in done), tail), fresh

    def _split_inserted(self, source: str, inserts: Sequence[Insert]) -> tuple[str, list[str], str]:
        """``split_body`` of the page as written, with each stand-in's section put in.

        The source is cut at the stand-ins first, so only the template's own sections are
        parsed. Every stand-in must be a top-level section of its own, each once and in order
        (else the caller's whole-page fallback expands them and reports what was altered).
        """
        chunks = source.split(self._insert_head)
        if len(chunks) != len(inserts) + 1:
            raise Unsupported("section stand-ins missing or repeated")
        # the nonce anywhere but in the stand-ins: one of them was altered
        if source.count('data-n="' + self._nonce) != len(inserts):
            raise Unsupported("a section stand-in was altered")
        first = chunks[0]
        opened = self._body_start(first)
        sections: list[str] = []
        if sections_from(first, opened, sections) != len(first):
            raise Unsupported("a section stand-in inside a section")
        frame_close = None
        last = len(inserts) - 1
        for k, chunk in enumerate(chunks[1:]):
            tag_end = f'{k}" />'
            if not chunk.startswith(tag_end):
                raise Unsupported("a section stand-in was altered or moved")
            insert = inserts[k]
            if isinstance(insert, str):
                sections.append(insert)
            else:
                sections.extend(insert)
            if k != last and len(chunk.rstrip()) == len(tag_end):
                continue  # only white space up to the next stand-in
            stop = sections_from(chunk, len(tag_end), sections)
            if stop != len(chunk):
                if k != last:
                    raise Unsupported("a section stand-in after mj-body")
                frame_close = chunk[stop:]
        if frame_close is None:
            raise Unsupported("mj-body is not closed")
        return first[:opened], sections, frame_close

    def _body_start(self, source: str) -> int:
        """``body_start``, without the search when the page opens as a recent one did (the
        head is the same for every member of an edition)."""
        for known in self._opens:
            if source.startswith(known):
                return len(known)
        opened = body_start(source)
        self._opens = (source[:opened], *self._opens[:7])  # a few editions' heads
        return opened

    def _mask(self, section: str, values: Sequence[str]) -> _Masked | None:
        """The section with the member's ``values`` (longest first) masked, or None if it
        holds none of them (or holds a mask character of its own: then the plain way)."""
        if "\x01" in section:
            return None
        masked, used = section, []
        for value in values:
            if value in masked:
                # personal values are single lines of text: they never contain \x01
                mark = f"\x01{len(used)}\x01"
                masked = masked.replace(value, mark)
                used.append((mark, value))
        return _Masked(masked, tuple(used)) if used else None

    def _abstract(self, section: str, masked: _Masked | None) -> tuple[str, tuple[_Slot, ...]]:
        """``abstract(section)``; a section holding personal values through a cache keyed on
        its masked source, so its shape is not worked out again for every member."""
        if masked is None:
            return abstract(section, self._marker)
        with self._lock:
            hit = self._masked.get(masked.source)
            if hit is not None:
                self._masked.move_to_end(masked.source)
        if hit is None:
            shape_src, masked_slots = abstract(masked.source, self._marker)
            if "\x01" in shape_src:  # a value outside text and links: no reuse, plain way
                return abstract(section, self._marker)
            hit = (shape_src, masked_slots)
            with self._lock:
                self._masked[masked.source] = hit
                while len(self._masked) > self._max_shapes:
                    self._masked.popitem(last=False)
        shape_src, masked_slots = hit
        return shape_src, tuple(_unmask(slot, masked.used) for slot in masked_slots)

    def _remember_personal(self, masked: _Masked, shape: _Shape) -> None:
        """Keep a member's section compiled with all but their own values written out: the
        next member's copy is then a few string joins (their name, address and links)."""
        with self._lock:
            hit = self._masked.get(masked.source)
        if hit is None or hit[0] not in self._shapes:
            return
        masked_slots = hit[1]
        parts: list[str | _Slot] = []
        try:
            for part in shape.parts:
                if isinstance(part, str):
                    parts.append(part)
                    continue
                slot = masked_slots[part.index]
                if "\x01" in slot.raw:
                    parts.append(_Slot(part.kind, slot.raw, part.tag, part.name))
                else:
                    parts.append(_fill((part,), masked_slots))
        except Unsupported:
            return
        merged: list[str | _Slot] = []
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        with self._lock:
            self._prefilled[masked.source] = (tuple(merged), shape.head_key)
            while len(self._prefilled) > self._max_shapes:
                self._prefilled.popitem(last=False)

    def _probe(self, frame_open: str, frame_close: str, bodies: list[str]) -> list[str]:
        """Compile ``bodies`` in one page, cut apart again: [head, body 1, ..., body n, tail]."""
        cut = f"<mj-raw>{self._cut}</mj-raw>"
        source = frame_open + cut + cut.join(bodies) + cut + frame_close
        self.compiles += 1
        page = self.compile_page(source)
        parts = page.split(self._cut)
        if len(parts) != len(bodies) + 2:
            raise Unsupported("section boundaries were lost in compiling")
        return parts

    def _check_css(self, head: str) -> None:
        reason = _unsafe_css(head)
        if reason:  # the head comes from the templates: no page of theirs can be reused
            self.disabled = f"the templates' CSS has a {reason}"
            log.warning("section reuse turned off, every page is compiled whole: %s", self.disabled)
            raise Unsupported(self.disabled)

    def _compile_shapes(
        self,
        frame_open: str,
        frame_close: str,
        missing: dict[str, tuple[tuple[_Slot, ...], list[int]]],
    ) -> None:
        shapes = list(missing)
        parts = self._probe(frame_open, frame_close, shapes)
        self._check_css(parts[0])
        compiled: dict[str, _Shape] = {}
        for shape_src, fragment in zip(shapes, parts[1:-1], strict=True):
            slots = missing[shape_src][0]
            split = _split_compiled(
                fragment,
                slots,
                self._pattern,
                lambda m: int(self._pattern.match(m).group(1)),  # type: ignore[union-attr]
            )
            compiled[shape_src] = _Shape(split, _head_key(shape_src))
        with self._lock:
            for key, shape in compiled.items():
                self._shapes[key] = shape
                self._shapes.move_to_end(key)
            while len(self._shapes) > self._max_shapes:
                self._shapes.popitem(last=False)

    def _compile_frame(
        self,
        frame_open: str,
        frame_close: str,
        sections: list[str],
        pieces: list[tuple[str, str]],
    ) -> tuple[str, str]:
        # one section per distinct head contribution, in order of first appearance
        chosen: dict[str, str] = {}
        for section, piece in zip(sections, pieces, strict=True):
            chosen.setdefault(piece[1], section)
        parts = self._probe(frame_open, frame_close, list(chosen.values()))
        self._check_css(parts[0])
        return parts[0], parts[-1]


@lru_cache(maxsize=4096)
def _head_key(shape_src: str) -> str:
    """What a section contributes to the page head (column widths' media queries and such)."""
    page = mjml2html(f"<mjml><mj-body>{shape_src}</mj-body></mjml>", fonts={})
    return page[: page.find("<body")]
