"""Render a digest: Jinja2 -> MJML -> HTML -> inlined CSS, plus the plain-text part and subject.

MJML compiling and CSS inlining cost tens of milliseconds a page; a send run needs hundreds of
messages a second, every one of them personal. So the page goes through ``SectionCache``
(``digest.sections``): each top-level section is compiled once per *shape* and reused with
this member's text and links put in, byte-for-byte what compiling the whole page would give.
``cache=False`` compiles the whole page from scratch; tests prove both paths give the same
bytes, and the cache checks itself against a whole compile whenever it compiles anything new.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
from jinja2.runtime import Context
from markupsafe import Markup, escape
from mjml import mjml2html
from premailer import Premailer

from digest.clicks import LINK, TEXT, ClickScope
from digest.compose import one_line
from digest.content import ArticleView, DigestIssue, MemberView, Personal, Rendered, TopicGroup
from digest.resources import template_folders, template_loader
from digest.sections import Insert, InsertsAltered, SectionCache
from digest.summaries import ELLIPSIS, Summary, key_point_summary

if TYPE_CHECKING:
    from digest.settings import Settings

#: Gmail clips an HTML part over 102 KB; the default budget leaves room for personal values.
GMAIL_CLIP_BYTES = 102 * 1024
DEFAULT_HTML_BUDGET = 90_000
#: Longest subject: what a phone's inbox list shows before it cuts the line.
SUBJECT_MAX = 70
DEFAULT_SUMMARY_WORDS = 40
#: Zero-width joiners and no-break spaces after the preheader: an inbox list fills its preview
#: line with the body's first words unless something invisible takes their place.
PREHEADER_PADDING = Markup("&#847;&zwnj;&nbsp;" * 50)

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

DIGEST_TEMPLATES = (
    "email/digest.mjml.j2",
    "email/layout.mjml.j2",
    "email/_masthead.mjml.j2",
    "email/_article.mjml.j2",
    "email/_contents_entry.mjml.j2",
    "email/_contents_entry.txt.j2",
    "email/digest.txt.j2",
    "email/_article.txt.j2",
    "email/subject.txt.j2",
)

_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
_DOCTYPE_RE = re.compile(r"^\s*(<!doctype[^>]*>)", re.IGNORECASE)
_WS_RE = re.compile(r"\s+")


# ------------------------------------------------------------------ filters


def date_long(value: datetime) -> str:
    """``24 March 2025``: fixed English month names, independent of the process locale."""
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def wrap(value: str, indent: str = "", width: int = 78) -> str:
    """Wrap at 78 columns for the text part; long words (URLs) are never broken."""
    return _wrap(str(value), indent, width)


def wrap72(value: str, indent: str = "", width: int = 72) -> str:
    """``wrap`` at 72 columns (kept for templates written for it)."""
    return _wrap(str(value), indent, width)


def shorten(value: str, width: int) -> str:
    """``value`` on one line, at most ``width`` characters: cut at a word, with an ellipsis."""
    text = clean_line(str(value))
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space > width // 2:  # a word boundary not too far back; else cut inside the word
        cut = cut[:space]
    return cut.rstrip(" ,;:-\u2013\u2014") + ELLIPSIS


@jinja2.pass_context
def article_href(context: Context, article: ArticleView, position: str = LINK) -> str:
    """Where an article's links lead: every headline, "Read more" and contents link goes
    through here (its URL if http(s), else no link). Rendered with a click scope
    (``clicks``, a delivery's edition), it is the article's click link (``digest.clicks``),
    made once per edition, article and ``position``; in the plain-text part (``"text"``)
    only with ``track_text_links``, else the article's own URL."""
    url = http_url(article.url)
    scope = context.get("clicks")
    links = scope.links if scope is not None else None
    if position == TEXT and (links is None or not links.track_text or not url):
        return article.url
    if not url or links is None:
        return url
    return links.href(scope, article, position, url)


@functools.lru_cache(maxsize=4096)
def _wrap(value: str, indent: str, width: int) -> str:
    # the same article paragraphs are wrapped for every member who gets them
    return fill_words(_WS_RE.sub(" ", str(value)).strip(), indent, width)


def fill_words(text: str, indent: str, width: int) -> str:
    """``textwrap.fill(text, width, subsequent_indent=indent, break_long_words=False,
    break_on_hyphens=False)`` for text whose only white space is single spaces.

    The same lines (tested against textwrap), for a fraction of the cost: the text part wraps a
    few lines of each member's own (their topics, the issue's first title) in every message.
    """
    if len(text) <= width:
        return text
    lines: list[str] = []
    line = ""
    room = width  # the first line has no indent
    for word in text.split(" "):
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= room:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line, room = word, width - len(indent)
    lines.append(line)
    return ("\n" + indent).join(lines)


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
    return one_line(value)


# ------------------------------------------------------------------ HTML pipeline


class _Environment(jinja2.Environment):
    """Jinja's environment, with each template's globals one plain dict.

    Jinja layers them over the environment's globals in a ``ChainMap``, which every render
    copies and walks key by key: about a tenth of rendering a digest. Ours are all set before
    any template is loaded and never change, as Jinja's documentation asks of globals.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


def make_environment(
    templates_dir: str | Path = "", auto_reload: bool = True
) -> jinja2.Environment:
    """One environment per renderer: compiled templates are cached in it.

    An operator's ``templates_dir`` needs only the templates it changes: the rest come from the
    built-in set (``digest.resources``); empty means the built-in set alone.
    """
    env = _Environment(
        loader=template_loader(templates_dir),
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
        auto_reload=auto_reload,
    )
    env.filters["date_long"] = date_long
    env.filters["wrap"] = wrap
    env.filters["wrap72"] = wrap72
    env.filters["shorten"] = shorten
    env.filters["http_url"] = http_url
    env.filters["article_href"] = article_href
    env.globals["preheader_padding"] = PREHEADER_PADDING
    env.globals["summary"] = functools.partial(summarize, words=DEFAULT_SUMMARY_WORDS)
    return env


def summarize(article: ArticleView, words: int = DEFAULT_SUMMARY_WORDS) -> Summary:
    """An article's key points cut to ``words`` words (0: all of them, in full)."""
    return key_point_summary(article.key_points, words)


#: MJML's own reset styles (``table, td {border-collapse ...}``, ``p {margin: 13px 0}``): kept
#: in the head, not inlined onto every table, cell and paragraph (8 KB of a 20-article page;
#: the clients that need them read style blocks).
_MJML_RESET = '<style type="text/css">\n#outlook a {'


def mjml_to_html(mjml_source: str) -> str:
    """Compile MJML and inline the CSS; never touches the network; keeps the doctype."""
    compiled = mjml2html(mjml_source, fonts={})
    compiled = compiled.replace(
        _MJML_RESET, '<style type="text/css" data-premailer="ignore">\n#outlook a {', 1
    )
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
        # keep MJML's pixel widths: premailer would turn <img width="180"> into width="100%"
        # from the CSS, and Outlook for Windows then draws the image at the file's own width
        disable_basic_attributes=["width", "height"],
    ).transform()
    if match and not _DOCTYPE_RE.match(inlined):
        inlined = f"{match.group(1)}\n{inlined}"
    return inlined


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
    interest: str = "on the topics you follow"  # what their articles are chosen by: interest_of()


def interest_of(member: MemberView) -> str:
    """How the greeting names what a member's articles were chosen by: a member who follows
    only people and organisations has no topics to be told about, and one who chose nothing
    gets the whole archive."""
    topics = bool(member.topics or member.topic_slugs)
    if not topics and not member.resource_ids:
        return "from the archive"
    if not member.resource_ids:
        return "on the topics you follow"
    if not topics:
        return "about the people and organisations you follow"
    return "on the topics, people and organisations you follow"


@dataclass(frozen=True)
class LinksContext:
    preferences_url: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    archive_url: str
    view_url: str
    subscribe_url: str


def personal_values(issue: DigestIssue) -> dict[str, str]:
    """The per-member strings, cleaned the same way for both render paths."""
    return {
        "name": clean_line(issue.member.name),
        "email": clean_line(issue.member.email),
        "preferences_url": clean_line(issue.links.preferences_url),
        "unsubscribe_url": clean_line(issue.links.unsubscribe_url),
        "unsubscribe_mailto": clean_line(issue.links.unsubscribe_mailto),
        "view_url": clean_line(issue.links.view_url),
    }


def contents_of(issue: DigestIssue) -> tuple[TopicGroup, ...]:
    """Every article of the issue by topic, as selected: the groups before the size budget
    moved any into ``more``, and any other ``more`` articles in a group of their own."""
    groups = issue.all_groups
    listed = {a.id for g in groups for a in g.articles}
    extra = tuple(a for a in issue.more if a.id not in listed)
    return (*groups, TopicGroup("More in this issue", extra)) if extra else groups


def spans_topics(articles: Sequence[ArticleView]) -> bool:
    """Whether the articles between them have more than one topic (then each card says its
    topics; in a one-topic digest the line would only repeat the section heading)."""
    seen: set[str] = set()
    for article in articles:
        seen.update(article.topic_slugs or (t.casefold() for t in article.topics))
        if len(seen) > 1:
            return True
    return False


def preview_line(issue: DigestIssue, articles: Sequence[ArticleView]) -> str:
    """The preheader: the headlines after the one the subject names, then the date."""
    rest = [clean_line(a.title) for a in articles[1:3]]
    if len(articles) > 3:
        rest.append(f"and {len(articles) - 3} more")
    label = clean_line(issue.edition_label)
    if not rest:
        return f"{clean_line(articles[0].title)} \u00b7 {label}" if articles else label
    return f"Also: {'; '.join(rest)} \u00b7 {label}"


def _digest_context(issue: DigestIssue, values: Mapping[str, str], brand: Brand) -> dict[str, Any]:
    contents = contents_of(issue)
    everything = tuple(a for g in contents for a in g.articles)
    return {
        "brand": brand,
        "article_count": len(everything),
        "site_name": issue.site_name,
        "base_url": issue.base_url,
        "edition": issue.edition,
        "edition_label": issue.edition_label,
        "groups": issue.groups,
        "contents": contents,
        "carded": frozenset(a.id for a in issue.articles),
        "more": issue.more,
        # the "More in this issue" links: lines like the contents list's (one group, no label)
        "more_list": (TopicGroup("More in this issue", issue.more),),
        "articles": everything,
        "preview_line": preview_line(issue, everything),
        "web": issue.web,
        "member": MemberContext(
            name=values["name"],
            email=values["email"],
            topics=issue.member.topics,
            frequency=issue.member.frequency,
            interest=interest_of(issue.member),
        ),
        "links": LinksContext(
            preferences_url=values["preferences_url"],
            unsubscribe_url=values["unsubscribe_url"],
            unsubscribe_mailto=values["unsubscribe_mailto"],
            archive_url=issue.links.archive_url,
            view_url=values["view_url"],
            subscribe_url=issue.links.subscribe_url,
        ),
    }


def clean_subject(value: str) -> str:
    """One line of at most ``SUBJECT_MAX`` characters, whatever the template printed."""
    return shorten(value, SUBJECT_MAX)


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
        selected=issue.all_groups,
    )


# ------------------------------------------------------------------ renderer


_Page = tuple[tuple[str, ...], dict[str, Any]]
#: Article texts are printed as stand-ins, ``\x02<n>\x02``: personal values and content are
#: single lines without control characters, so nothing else can look like one.


def prints_verbatim(env: jinja2.Environment, function: str) -> bool:
    """Whether every call of ``function`` in the digest templates is printed as it is.

    ``{{ article_cards(groups) }}`` is; ``{{ article_cards(groups) | upper }}`` or a call in
    a ``set`` is not. Only then may the renderer print stand-ins and put the real text in
    afterwards: the result is the same string.
    """
    for name in DIGEST_TEMPLATES:
        try:
            source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            continue
        tree = env.parse(source)
        calls = [
            c
            for c in tree.find_all(jinja2.nodes.Call)
            if isinstance(c.node, jinja2.nodes.Name) and c.node.name == function
        ]
        ids = {id(c) for c in calls}
        outputs = tree.find_all(jinja2.nodes.Output)
        direct = [n for out in outputs for n in out.nodes if id(n) in ids]
        if len(direct) != len(calls):
            return False
    return True


class _Direct:
    """Render the whole page from scratch."""


class _Reuse:
    """Render from cached sections; ``personal`` are the member's strings as printed."""

    def __init__(
        self, sections: SectionCache, issue: DigestIssue, values: Mapping[str, str]
    ) -> None:
        self.sections = sections
        self.personal = [str(escape(v)) for v in values.values()]
        self.personal.append(str(escape(", ".join(issue.member.topics))))


_Mode = _Direct | _Reuse


def _size(parts: tuple[str, ...]) -> int:
    """UTF-8 size of the page: what Gmail's clipping limit counts.

    Shared pieces (sections, the frame) recur in every page: their sizes are remembered.
    """
    sizes, total = _SIZES, 0
    for p in parts:
        n = sizes.get(p)
        if n is None:
            n = len(p) if p.isascii() else len(p.encode("utf-8"))
            if not isinstance(p, Personal):
                if len(sizes) >= _SIZES_MAX:
                    sizes.clear()
                sizes[p] = n
        total += n
    return total


_SIZES: dict[str, int] = {}
_SIZES_MAX = 4096


def _as_run(
    sections: Iterable[str],
    collect: list[Insert] | None,
    stand_in: Callable[[int], str] | None,
) -> Markup:
    """Sections printed as they are, or (with ``collect`` and ``stand_in``) collected as one
    run behind a single stand-in for the section cache to put back."""
    if collect is None or stand_in is None:
        return Markup("".join(sections))
    collect.append(tuple(sections))
    return Markup(stand_in(len(collect) - 1))


class Renderer:
    """Renders digests and confirmation mails from one templates directory.

    ``html_size_budget`` (bytes, 0 = off) keeps the HTML part under Gmail's clipping limit:
    an issue that would be larger keeps its first articles in full and lists the rest as
    links under "More in this issue", so nothing disappears behind "[Message clipped]".
    """

    def __init__(
        self,
        templates_dir: str | Path = "",
        *,
        html_size_budget: int = DEFAULT_HTML_BUDGET,
        brand: Brand | None = None,
        check_seconds: float = 1.0,
        summary_words: int = DEFAULT_SUMMARY_WORDS,
    ) -> None:
        self.templates_dir = templates_dir
        self._folders = template_folders(templates_dir)
        # the renderer checks the templates' mtimes itself, at most every ``check_seconds``
        # (a send run renders thousands of pages a second: ten stat calls each add up)
        self.env = make_environment(self.templates_dir, auto_reload=False)
        self.summary_words = max(0, summary_words)
        self.env.globals["summary"] = functools.partial(summarize, words=self.summary_words)
        self.check_seconds = check_seconds
        self._checked_at = float("-inf")
        self.html_size_budget = html_size_budget
        self.brand = brand or Brand()
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._sections = SectionCache(mjml_to_html)
        self._direct_compiles = 0
        # may cards / texts / entries / text entries be stand-ins
        self._verbatim = (False, False, False, False)
        self._cards: dict[tuple[str, int, str, str, str, bool, bool], tuple[ArticleView, str]]
        self._cards = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Renderer:
        """The renderer the settings describe: templates, size budget and branding."""
        return cls(
            settings.templates_dir,
            html_size_budget=settings.html_size_budget,
            summary_words=settings.summary_words,
            brand=Brand(
                accent=settings.brand_accent_color,
                logo_url=settings.brand_logo_url,
                postal_address=settings.postal_address,
            ),
        )

    @property
    def compiles(self) -> int:
        """MJML + CSS inlining runs so far (whole pages and section probes): shows reuse."""
        return self._sections.compiles + self._direct_compiles

    @property
    def section_cache(self) -> SectionCache:
        """The section cache for the templates as they are now (an edit starts a new one)."""
        now = time.monotonic()
        if now - self._checked_at < self.check_seconds:
            return self._sections
        self._checked_at = now
        stamp = self._template_stamp()
        with self._lock:
            if stamp != self._stamp:
                if self._stamp is not None:
                    self._direct_compiles += self._sections.compiles
                    self._sections = SectionCache(mjml_to_html)
                    self.env.cache.clear()  # type: ignore[union-attr]
                self._cards.clear()
                self._verbatim = (
                    prints_verbatim(self.env, "article_cards"),
                    prints_verbatim(self.env, "article_texts"),
                    prints_verbatim(self.env, "contents_entries"),
                    prints_verbatim(self.env, "contents_texts"),
                )
                self._stamp = stamp
            return self._sections

    # -- digest

    def render_digest(self, issue: DigestIssue, cache: bool = True) -> Rendered:
        """One member's edition; ``cache=False`` compiles the whole page from scratch.

        The web copy (``issue.web``) is not cut to the size budget: no mail client clips it.
        """
        values = personal_values(issue)
        mode = _Direct() if not cache else _Reuse(self.section_cache, issue, values)
        fitted, parts, context = self._fit(issue, values, mode, budget=not issue.web)
        get = self.env.get_template
        text, text_parts = self._text(context)
        return Rendered(
            subject=clean_subject(get("email/subject.txt.j2").render(context)),
            html="".join(parts),
            text=text,
            html_parts=parts if cache else (),
            text_parts=text_parts if cache else (),
        )

    def _text(self, context: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        """The plain-text part, and its pieces when the article texts went in as stand-ins."""
        template = self.env.get_template("email/digest.txt.j2")
        texts: list[tuple[str, ...]] | None = context.get("_texts")
        out = template.render(context)
        if texts is None:
            return out, ()
        pieces = out.split("\x02")
        # stand-ins alternate with the template's text: they must be 0, 1, 2... once each
        if pieces[1::2] != [str(i) for i in range(len(texts))] or len(pieces) % 2 == 0:
            context = {**context, "_texts": None, **context["_plain_texts"]}
            return template.render(context), ()
        # the template's own text holds the member's name, address and links: Personal
        parts: list[str] = []
        for k, piece in enumerate(pieces):
            if k % 2 == 0:
                if piece:
                    parts.append(Personal(piece))
            else:
                parts.extend(texts[k // 2])
        return "".join(parts), tuple(parts)

    def _compile_direct(self, source: str) -> tuple[str, ...]:
        with self._lock:
            self._direct_compiles += 1
        return (mjml_to_html(source),)

    def _page(self, issue: DigestIssue, values: Mapping[str, str], mode: _Mode) -> _Page:
        """The HTML page in pieces, and the template context that rendered it."""
        template = self.env.get_template("email/digest.mjml.j2")
        if isinstance(mode, _Direct):
            context = self.context(issue, values)
            return self._compile_direct(template.render(context)), context
        cards: list[Insert] = []
        context = self.context(issue, values, mode.sections, cards)
        try:
            parts = mode.sections.html_parts(template.render(context), mode.personal, cards)
        except InsertsAltered:  # an operator's template transformed them: the plain way
            context = self.context(issue, values)
            parts = mode.sections.html_parts(template.render(context), mode.personal)
        return parts, context

    def context(
        self,
        issue: DigestIssue,
        values: Mapping[str, str],
        sections: SectionCache | None = None,
        cards: list[Insert] | None = None,
    ) -> dict[str, Any]:
        """What the digest templates see, ``article_card`` and ``article_cards`` included.

        With ``sections`` and ``cards``, ``article_cards`` prints a stand-in per card and
        collects the cards, and ``article_texts`` does the same for the text part (see
        :meth:`SectionCache.insert_tag`): the page's source stays small.
        """
        context = _digest_context(issue, values, self.brand)
        # an article's topics are worth a line only when the digest spans more than one
        shared = {
            "site_name": issue.site_name,
            "base_url": issue.base_url,
            "show_topics": spans_topics(context["articles"]),
            "clicks": issue.clicks,
        }
        context["article_card"] = functools.partial(self._article_card, **shared)
        context["article_text"] = functools.partial(self._article_text, **shared)
        context["article_cards"] = functools.partial(self._article_cards, **shared)
        context["article_texts"] = functools.partial(self._article_texts, **shared)
        entries = functools.partial(
            self._contents_entries,
            carded=context["carded"],
            site_name=issue.site_name,
            base_url=issue.base_url,
            clicks=issue.clicks,
        )
        context["contents_entries"] = entries
        contents_texts = functools.partial(
            self._contents_texts, site_name=issue.site_name, base_url=issue.base_url
        )
        context["contents_texts"] = contents_texts
        verbatim_cards, verbatim_texts, verbatim_entries, verbatim_lines = self._verbatim
        if sections is not None and cards is not None and verbatim_cards:
            context["article_cards"] = functools.partial(
                self._article_cards, **shared, collect=cards, stand_in=sections.insert_tag
            )
        if sections is not None and cards is not None and verbatim_entries:
            context["contents_entries"] = functools.partial(
                entries, collect=cards, stand_in=sections.insert_tag
            )
        if sections is not None and (verbatim_texts or verbatim_lines):
            texts: list[tuple[str, ...]] = []
            context["_plain_texts"] = {
                "article_texts": context["article_texts"],
                "contents_texts": contents_texts,
            }
            context["_texts"] = texts
            if verbatim_texts:
                context["article_texts"] = functools.partial(
                    self._article_texts, **shared, collect=texts
                )
            if verbatim_lines:
                context["contents_texts"] = functools.partial(contents_texts, collect=texts)
        return context

    def _article_cards(
        self,
        groups: Sequence[TopicGroup],
        *,
        site_name: str,
        base_url: str,
        show_topics: bool = False,
        clicks: ClickScope | None = None,
        collect: list[Insert] | None = None,
        stand_in: Callable[[int], str] | None = None,
    ) -> Markup:
        """Every group's cards in order, the first of each with its topic heading: one template
        call per page instead of one per article."""
        cards = (
            self._partial(
                "email/_article.mjml.j2",
                a,
                group.topic if i == 0 else "",
                site_name,
                base_url,
                show_topics,
                clicks=scope,
            )
            for group in groups
            for scope in (clicks.under(group.topic) if clicks is not None else None,)
            for i, a in enumerate(group.articles)
        )
        return _as_run(cards, collect, stand_in)

    def _contents_entries(
        self,
        groups: Sequence[TopicGroup],
        *,
        carded: Collection[int],
        site_name: str,
        base_url: str,
        clicks: ClickScope | None = None,
        collect: list[Insert] | None = None,
        stand_in: Callable[[int], str] | None = None,
    ) -> Markup:
        """The contents list, one section per headline ("email/_contents_entry.mjml.j2",
        rendered once per article and reused): a topic names its group's first line when
        there are several groups."""
        labelled = len(groups) > 1
        entries = (
            self._partial(
                "email/_contents_entry.mjml.j2",
                a,
                group.topic if labelled and i == 0 else "",
                site_name,
                base_url,
                in_card=a.id in carded,
                clicks=None if a.id in carded else scope,
            )
            for group in groups
            for scope in (clicks.under(group.topic) if clicks is not None else None,)
            for i, a in enumerate(group.articles)
        )
        return _as_run(entries, collect, stand_in)

    def _contents_texts(
        self,
        groups: Sequence[TopicGroup],
        *,
        site_name: str,
        base_url: str,
        collect: list[tuple[str, ...]] | None = None,
    ) -> str:
        """The text part's contents list, a line per headline ("email/_contents_entry.txt.j2",
        rendered once per article and reused), a topic over its group's first line when there
        are several groups."""
        labelled = len(groups) > 1
        lines = (
            self._partial(
                "email/_contents_entry.txt.j2",
                a,
                group.topic if labelled and i == 0 else "",
                site_name,
                base_url,
            )
            for group in groups
            for i, a in enumerate(group.articles)
        )
        if collect is None:
            return "".join(lines)
        collect.append(tuple(p for p in lines if p))  # one stand-in for the run
        return f"\x02{len(collect) - 1}\x02"

    def _article_texts(
        self,
        articles: Sequence[ArticleView],
        *,
        site_name: str,
        base_url: str,
        show_topics: bool = False,
        clicks: ClickScope | None = None,
        collect: list[tuple[str, ...]] | None = None,
    ) -> str:
        # text links count only with track_text_links: else the text is the same for everyone
        if clicks is not None and (clicks.links is None or not clicks.links.track_text):
            clicks = None
        texts = (
            self._partial(
                "email/_article.txt.j2", a, "", site_name, base_url, show_topics, clicks=clicks
            )
            for a in articles
        )
        if collect is None:
            return "".join(texts)
        collect.append(tuple(p for p in texts if p))  # one stand-in for the run
        return f"\x02{len(collect) - 1}\x02"

    def _article_text(
        self,
        article: ArticleView,
        *,
        site_name: str,
        base_url: str,
        show_topics: bool = False,
        clicks: ClickScope | None = None,
    ) -> str:
        """``_article.txt.j2`` for one article: rendered once, reused like the HTML card."""
        if clicks is not None and (clicks.links is None or not clicks.links.track_text):
            clicks = None
        return self._partial(
            "email/_article.txt.j2", article, "", site_name, base_url, show_topics, clicks=clicks
        )

    def _article_card(
        self,
        article: ArticleView,
        heading: str = "",
        *,
        site_name: str,
        base_url: str,
        show_topics: bool = False,
        clicks: ClickScope | None = None,
    ) -> Markup:
        """``_article.mjml.j2`` for one article, rendered once and reused for every member.

        The card sees only ``article``, ``heading``, ``brand``, ``site_name``, ``base_url``,
        ``show_topics`` and ``clicks`` (the edition's click scope, which the
        ``article_href`` filter reads), so it is the same for everyone who gets the article
        in that edition (unless members' clicks are tracked).
        """
        return Markup(
            self._partial(
                "email/_article.mjml.j2",
                article,
                heading,
                site_name,
                base_url,
                show_topics,
                clicks=clicks.under(heading) if clicks is not None and heading else clicks,
            )
        )

    def _partial(
        self,
        name: str,
        article: ArticleView,
        heading: str,
        site_name: str,
        base_url: str,
        show_topics: bool = False,
        in_card: bool = True,
        clicks: ClickScope | None = None,
    ) -> str:
        # keyed by the article object itself, not its (costly) value hash: the sender reuses
        # one ArticleView per article, and the entry holds it so its id cannot be reused
        key = (name, id(article), heading, site_name, base_url, show_topics, in_card, clicks)
        hit = self._cards.get(key)  # one dict operation: atomic, no lock needed
        out = hit[1] if hit is not None and hit[0] is article else None
        if out is None:
            out = self.env.get_template(name).render(
                article=article,
                heading=heading,
                brand=self.brand,
                site_name=site_name,
                base_url=base_url,
                show_topics=show_topics,
                in_card=in_card,
                clicks=clicks,
            )
            if name.endswith(".mjml.j2"):
                # a top-level section: white space around it is nothing in MJML but text next
                # to an mj-raw, so it never reaches the page
                out = out.strip()
            with self._lock:
                if len(self._cards) >= 4096:
                    self._cards.clear()
                self._cards[key] = (article, out)
        return out

    def _fit(
        self,
        issue: DigestIssue,
        values: Mapping[str, str],
        mode: _Mode,
        budget: bool = True,
    ) -> tuple[DigestIssue, tuple[str, ...], dict[str, Any]]:
        """The issue cut to the HTML size budget, its page and its template context.

        Both render paths measure the same bytes, so they always cut at the same article: the
        most articles in full whose page fits (a binary search; a kept article adds its card
        and takes its line out of "More in this issue", so the size grows with the count).
        Nothing fits: no card at all.
        """
        parts, context = self._page(issue, values, mode)
        limit = self.html_size_budget if budget else 0
        articles = issue.articles
        if limit <= 0 or _size(parts) <= limit or not articles:
            return issue, parts, context
        best: tuple[DigestIssue, tuple[str, ...], dict[str, Any]] | None = None
        low, high = 0, len(articles) - 1  # the most that may fit
        while low <= high:
            keep = (low + high) // 2
            fitted = with_articles_kept(issue, keep)
            parts, context = self._page(fitted, values, mode)
            if _size(parts) <= limit:
                best, low = (fitted, parts, context), keep + 1
            else:
                high = keep - 1
        if best is None:  # not even the page without cards fits: that page, all the same
            fitted = with_articles_kept(issue, 0)
            parts, context = self._page(fitted, values, mode)
            best = (fitted, parts, context)
        return best

    def _template_stamp(self) -> tuple[int, ...]:
        """Template mtimes: an edited (or newly overriding) template invalidates the cached
        sections."""
        stamps = []
        for name in DIGEST_TEMPLATES:
            for folder in self._folders:
                try:
                    stamps.append((folder / name).stat().st_mtime_ns)
                except OSError:
                    stamps.append(0)
        return tuple(stamps)

    # -- notices

    def render_notice(self, name: str, context: Mapping[str, Any]) -> Rendered:
        """A notice (``email/<name>.mjml.j2``, ``.txt.j2`` and ``_subject.txt.j2``): the
        confirmation and "already subscribed" mails. Rare, so rendered from scratch each time;
        the templates see ``brand``, ``site_name`` and ``context`` (a ``member`` in it is
        reduced to ``MemberContext``)."""
        values: dict[str, Any] = {"brand": self.brand, **context}
        member = values.get("member")
        if isinstance(member, MemberView):
            values["member"] = MemberContext(
                name=clean_line(member.name),
                email=clean_line(member.email),
                topics=member.topics,
                frequency=member.frequency,
                interest=interest_of(member),
            )
        get = self.env.get_template
        return Rendered(
            subject=clean_subject(get(f"email/{name}_subject.txt.j2").render(values)),
            html=mjml_to_html(get(f"email/{name}.mjml.j2").render(values)),
            text=get(f"email/{name}.txt.j2").render(values),
        )
