"""Render a digest: Jinja2 -> MJML -> HTML -> inlined CSS, plus the plain-text part and subject.

MJML compiling and CSS inlining cost milliseconds; a send run needs ~1000 messages a second.
So the expensive stages run once per distinct *article selection*: the issue is rendered with
the member's personal values replaced by opaque placeholders, that "shell" is compiled, inlined
and cached, and each member's message is the shell with the placeholders swapped for their
values, escaped exactly as the HTML serializer would have escaped them. ``cache=False`` renders
everything from scratch with the real values; tests prove both paths give the same bytes.

Templates may print personal values (``member.name``, ``member.email``, ``links.*``) but must
not transform or test them (no filters, no comparisons beyond ``if member.name``): the shell
would transform the placeholder instead. Everything else in the context is part of the key.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import textwrap
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
from lxml import etree
from mjml import mjml2html
from premailer import Premailer

from digest.content import ArticleView, DigestIssue, MemberView, Rendered, TopicGroup
from digest.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from digest.settings import Settings

#: Gmail clips an HTML part over 102 KB; the default budget leaves room for personal values.
GMAIL_CLIP_BYTES = 102 * 1024
DEFAULT_HTML_BUDGET = 90_000

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

DIGEST_TEMPLATES = (
    "email/digest.mjml.j2",
    "email/layout.mjml.j2",
    "email/_masthead.mjml.j2",
    "email/_article.mjml.j2",
    "email/digest.txt.j2",
    "email/subject.txt.j2",
)

_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
_DOCTYPE_RE = re.compile(r"^\s*(<!doctype[^>]*>)", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")
_TAG_NAME_RE = re.compile(r"<([A-Za-z][A-Za-z0-9:-]*)")
_ATTR_RE = re.compile(r"""([^\s"'<>/=]+)\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+)""")


# ------------------------------------------------------------------ filters


def date_long(value: datetime) -> str:
    """``24 March 2025``: fixed English month names, independent of the process locale."""
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def wrap72(value: str, indent: str = "", width: int = 72) -> str:
    """Wrap at 72 columns for the text part; long words (URLs) are never broken."""
    return textwrap.fill(
        _WS_RE.sub(" ", str(value)).strip(),
        width=width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def http_url(value: str | None) -> str:
    """The URL if it is http(s), else "": a ``javascript:`` link in content never gets a href."""
    if not value:
        return ""
    value = value.strip()
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        return ""
    return value if scheme in ("http", "https") else ""


def clean_line(value: str) -> str:
    """One line of display text: control characters out, whitespace collapsed."""
    chars = (" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in value)
    return _WS_RE.sub(" ", "".join(chars)).strip()


# ------------------------------------------------------------------ HTML pipeline


def make_environment(templates_dir: str | Path) -> jinja2.Environment:
    """One environment per renderer: compiled templates are cached in it.

    An operator's ``templates_dir`` needs only the templates it changes: the rest come from the
    built-in set.
    """
    folders = [str(templates_dir)]
    builtin = str(PROJECT_ROOT / "templates")
    if Path(templates_dir).resolve() != Path(builtin).resolve():
        folders.append(builtin)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("mjml.j2", "html.j2", "mjml", "html"),
            disabled_extensions=("txt.j2", "txt"),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["date_long"] = date_long
    env.filters["wrap72"] = wrap72
    env.filters["http_url"] = http_url
    return env


def mjml_to_html(mjml_source: str) -> str:
    """Compile MJML and inline the CSS; never touches the network; keeps the doctype."""
    compiled = mjml2html(mjml_source, fonts={})
    match = _DOCTYPE_RE.match(compiled)
    inlined = Premailer(
        compiled,
        keep_style_tags=True,
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        remove_classes=False,
        cssutils_logging_level=logging.CRITICAL,
        base_url=None,
        external_styles=None,
        exclude_pseudoclasses=True,
    ).transform()
    if match and not _DOCTYPE_RE.match(inlined):
        inlined = f"{match.group(1)}\n{inlined}"
    return inlined


def _serialize_attr(tag: str, name: str, value: str) -> str:
    """``name="value"`` exactly as lxml's HTML serializer (used by premailer) writes it."""
    element = etree.Element(tag)
    element.set(name, value)
    out = etree.tostring(element, method="html", encoding="utf-8").decode("utf-8")
    start = len(tag) + 2  # "<tag "
    return out[start : out.index(">", start)]


@dataclass(frozen=True)
class _AttrSlot:
    tag: str
    name: str
    template: str  # unescaped attribute value with placeholders in it


@dataclass(frozen=True)
class _TextSlot:
    key: str


_Part = str | _AttrSlot | _TextSlot


@dataclass(frozen=True)
class _Shell:
    subject: str
    html_parts: tuple[_Part, ...]
    text: str


class _Placeholders:
    """Opaque ASCII markers that survive Jinja escaping, MJML, premailer and lxml untouched."""

    KEYS = ("name", "email", "preferences_url", "unsubscribe_url", "unsubscribe_mailto")

    def __init__(self) -> None:
        nonce = secrets.token_hex(4)  # content cannot guess and forge a marker
        self.marker = {key: f"zzdg{nonce}x{i}zz" for i, key in enumerate(self.KEYS)}
        self.by_marker = {v: k for k, v in self.marker.items()}
        self.pattern = re.compile(rf"zzdg{nonce}x\d+zz")

    def substitute(self, value: str, values: Mapping[str, str]) -> str:
        return self.pattern.sub(lambda m: values[self.by_marker[m.group(0)]], value)

    def split_html(self, page: str) -> tuple[_Part, ...]:
        """Cut the compiled page at each marker into literal text and typed slots."""
        parts: list[_Part] = []
        pos = 0
        for match in self.pattern.finditer(page):
            if match.start() < pos:
                continue  # already inside an attribute slot
            lt = page.rfind("<", 0, match.start())
            gt = page.rfind(">", 0, match.start())
            if lt > gt:  # inside a start tag: the whole attribute becomes the slot
                tag_end = page.index(">", match.start())
                tag_match = _TAG_NAME_RE.match(page, lt)
                if tag_match is None or page.startswith("<!--", lt):
                    raise ValueError("personal value inside a comment or malformed tag")
                for attr in _ATTR_RE.finditer(page, tag_match.end(), tag_end):
                    if attr.start() <= match.start() < attr.end():
                        break
                else:
                    raise ValueError("personal value outside an attribute value")
                raw = attr.group(2)
                if raw[:1] in "\"'":
                    raw = raw[1:-1]
                parts.append(page[pos : attr.start()])
                parts.append(_AttrSlot(tag_match.group(1), attr.group(1), html.unescape(raw)))
                pos = attr.end()
            else:
                parts.append(page[pos : match.start()])
                parts.append(_TextSlot(self.by_marker[match.group(0)]))
                pos = match.end()
        parts.append(page[pos:])
        return tuple(p for p in parts if p != "")

    def fill_html(self, parts: tuple[_Part, ...], values: Mapping[str, str]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, _TextSlot):
                # lxml escapes exactly &, < and > in text nodes; quotes stay literal
                out.append(html.escape(values[part.key], quote=False))
            else:
                value = self.substitute(part.template, values)
                out.append(_serialize_attr(part.tag, part.name, value))
        return "".join(out)


# ------------------------------------------------------------------ context


@dataclass(frozen=True)
class Brand:
    """Operator branding from the settings: the same for every message of a renderer."""

    accent: str = "#0b57d0"
    logo_url: str = ""
    postal_address: str = ""

    def __post_init__(self) -> None:
        if not _COLOR_RE.fullmatch(self.accent):
            raise ValueError(f"brand accent colour must look like #1a2b3c, not {self.accent!r}")
        if self.logo_url and not http_url(self.logo_url):
            raise ValueError(f"brand logo URL must be http(s), not {self.logo_url!r}")
        object.__setattr__(self, "postal_address", clean_line(self.postal_address))


@dataclass(frozen=True)
class MemberContext:
    """The only member fields templates can see: StrictUndefined rejects the rest."""

    name: str
    email: str
    topics: tuple[str, ...]
    frequency: str


@dataclass(frozen=True)
class LinksContext:
    preferences_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    archive_url: str


def personal_values(issue: DigestIssue) -> dict[str, str]:
    """The per-member strings, cleaned the same way for both render paths."""
    return {
        "name": clean_line(issue.member.name),
        "email": clean_line(issue.member.email),
        "preferences_url": clean_line(issue.links.preferences_url),
        "unsubscribe_url": clean_line(issue.links.unsubscribe_url),
        "unsubscribe_mailto": clean_line(issue.links.unsubscribe_mailto),
    }


def _digest_context(issue: DigestIssue, values: Mapping[str, str], brand: Brand) -> dict[str, Any]:
    return {
        "brand": brand,
        "article_count": len(issue.articles) + len(issue.more),
        "site_name": issue.site_name,
        "base_url": issue.base_url,
        "edition": issue.edition,
        "edition_label": issue.edition_label,
        "groups": issue.groups,
        "more": issue.more,
        "articles": issue.articles,
        "member": MemberContext(
            name=values["name"],
            email=values["email"],
            topics=issue.member.topics,
            frequency=issue.member.frequency,
        ),
        "links": LinksContext(
            preferences_url=values["preferences_url"],
            unsubscribe_url=values["unsubscribe_url"],
            unsubscribe_mailto=values["unsubscribe_mailto"],
            archive_url=issue.links.archive_url,
        ),
    }


def clean_subject(value: str) -> str:
    return clean_line(value)


def with_articles_kept(issue: DigestIssue, keep: int) -> DigestIssue:
    """The issue with only its first ``keep`` articles in full; the rest lead ``more``."""
    articles = issue.articles
    kept = {a.id for a in articles[:keep]}
    groups = tuple(
        TopicGroup(g.topic, tuple(a for a in g.articles if a.id in kept)) for g in issue.groups
    )
    moved: tuple[ArticleView, ...] = articles[keep:]
    return replace(
        issue,
        groups=tuple(g for g in groups if g.articles),
        more=moved + tuple(a for a in issue.more if a.id not in kept),
    )


# ------------------------------------------------------------------ renderer


_ShellKey = tuple[Any, ...]


class Renderer:
    """Renders digests and confirmation mails from one templates directory.

    ``html_size_budget`` (bytes, 0 = off) keeps the HTML part under Gmail's clipping limit:
    an issue that would be larger keeps its first articles in full and lists the rest as
    links under "More in this issue", so nothing disappears behind "[Message clipped]".
    """

    def __init__(
        self,
        templates_dir: str | Path,
        *,
        cache_size: int = 256,
        html_size_budget: int = DEFAULT_HTML_BUDGET,
        brand: Brand | None = None,
    ) -> None:
        self.templates_dir = Path(templates_dir)
        self.env = make_environment(self.templates_dir)
        self.html_size_budget = html_size_budget
        self.brand = brand or Brand()
        self._placeholders = _Placeholders()
        self._cache: OrderedDict[_ShellKey, _Shell] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.compiles = 0  # how many shells were built: lets tests and benchmarks see reuse

    @classmethod
    def from_settings(cls, settings: Settings) -> Renderer:
        """The renderer the settings describe: templates, size budget and branding."""
        return cls(
            settings.templates_dir,
            html_size_budget=settings.html_size_budget,
            brand=Brand(
                accent=settings.brand_accent_color,
                logo_url=settings.brand_logo_url,
                postal_address=settings.postal_address,
            ),
        )

    # -- digest

    def render_digest(self, issue: DigestIssue, cache: bool = True) -> Rendered:
        """One member's edition; ``cache=False`` compiles from scratch with the real values."""
        values = personal_values(issue)
        if not cache:
            return self._render_direct(issue, values)
        shell = self._shell(issue, bool(values["name"]))
        ph = self._placeholders
        return Rendered(
            subject=clean_subject(ph.substitute(shell.subject, values)),
            html=ph.fill_html(shell.html_parts, values),
            text=ph.substitute(shell.text, values),
        )

    def _render_direct(self, issue: DigestIssue, values: Mapping[str, str]) -> Rendered:
        # The size decision is taken on the placeholder rendering in both paths, so the cached
        # and the direct path always cut an oversized issue at the same article.
        fitted, _ = self._fit(issue, bool(values["name"]))
        subject, mjml_source, text = self._render_templates(
            _digest_context(fitted, values, self.brand)
        )
        self.compiles += 1
        return Rendered(subject=clean_subject(subject), html=mjml_to_html(mjml_source), text=text)

    def _render_templates(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        get = self.env.get_template
        return (
            get("email/subject.txt.j2").render(context),
            get("email/digest.mjml.j2").render(context),
            get("email/digest.txt.j2").render(context),
        )

    def _template_stamp(self) -> tuple[int, ...]:
        """Template mtimes: an edited template invalidates the cached shells."""
        stamps = []
        for name in DIGEST_TEMPLATES:
            try:
                stamps.append((self.templates_dir / name).stat().st_mtime_ns)
            except OSError:
                stamps.append(0)
        return tuple(stamps)

    def _shell_key(self, issue: DigestIssue, has_name: bool) -> _ShellKey:
        # The article views themselves (frozen, hashable) rather than their ids, so an edited
        # article is never served from a stale shell.
        return (
            issue.groups,
            issue.more,
            issue.edition,
            issue.edition_label,
            issue.site_name,
            issue.base_url,
            issue.links.archive_url,
            issue.member.topics,
            issue.member.frequency,
            has_name,
            self._template_stamp(),
        )

    def _shell(self, issue: DigestIssue, has_name: bool) -> _Shell:
        key = self._shell_key(issue, has_name)
        with self._lock:
            shell = self._cache.get(key)
            if shell is not None:
                self._cache.move_to_end(key)
                return shell
        shell = self._build_shell(issue, has_name)
        with self._lock:
            self._cache[key] = shell
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return shell

    def _markers(self, has_name: bool) -> dict[str, str]:
        markers = dict(self._placeholders.marker)
        if not has_name:
            markers["name"] = ""
        return markers

    def _compile_shell(self, issue: DigestIssue, has_name: bool) -> tuple[str, str, str]:
        """(subject, HTML page, text) with placeholders for the personal values."""
        context = _digest_context(issue, self._markers(has_name), self.brand)
        subject, mjml_source, text = self._render_templates(context)
        return subject, mjml_to_html(mjml_source), text

    def _fit(self, issue: DigestIssue, has_name: bool) -> tuple[DigestIssue, tuple[str, str, str]]:
        """The issue cut to the HTML size budget, and its placeholder rendering.

        Few renders even for huge issues: the first guess scales the article count by how far
        over budget the page is, then steps down one article at a time.
        """
        compiled = self._compile_shell(issue, has_name)
        budget = self.html_size_budget
        articles = issue.articles
        size = len(compiled[1].encode("utf-8"))
        if budget <= 0 or size <= budget or not articles:
            return issue, compiled
        keep = min(len(articles) - 1, int(len(articles) * budget / size))
        while True:
            fitted = with_articles_kept(issue, keep)
            compiled = self._compile_shell(fitted, has_name)
            if keep == 0 or len(compiled[1].encode("utf-8")) <= budget:
                return fitted, compiled
            keep -= 1

    def _build_shell(self, issue: DigestIssue, has_name: bool) -> _Shell:
        _, (subject, page, text) = self._fit(issue, has_name)
        self.compiles += 1
        return _Shell(subject=subject, html_parts=self._placeholders.split_html(page), text=text)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- confirmation

    def render_confirmation(
        self, *, site_name: str, confirm_url: str, member: MemberView
    ) -> Rendered:
        """The double opt-in mail; rare, so rendered from scratch each time."""
        context = {
            "brand": self.brand,
            "site_name": site_name,
            "confirm_url": confirm_url,
            "member": MemberContext(
                name=clean_line(member.name),
                email=clean_line(member.email),
                topics=member.topics,
                frequency=member.frequency,
            ),
        }
        get = self.env.get_template
        return Rendered(
            subject=clean_subject(get("email/confirm_subject.txt.j2").render(context)),
            html=mjml_to_html(get("email/confirm.mjml.j2").render(context)),
            text=get("email/confirm.txt.j2").render(context),
        )
