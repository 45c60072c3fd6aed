"""The club's archive as pages: the index, articles, topics, people and organisations, search.

HTTP handlers only: the store is read through ``catalog``, ``archive.store`` and
``archive.search``; what a visitor may read is ``archive.access``'s rule. A visitor sees
titles, summary lines and first key points with an invitation to join; a signed-in member
(``signin`` pages, a signed cookie) reads everything and follows topics and resources from
their pages. Every listing is paginated and every page announces its Atom and JSON feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any
from urllib.parse import quote, urlencode

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import catalog
from digest.archive import search, store
from digest.archive.access import hidden_count, visible_key_points
from digest.archive.feeds import ATOM_TYPE, JSON_FEED_TYPE
from digest.archive.signin import SignIn
from digest.content import ArticleView
from digest.db import session_scope
from digest.members.rules import SUBSCRIBED_STATUSES
from digest.members.store import follow_topic, member_topic_slugs
from digest.models import Resource, Topic
from digest.topics import topic_slug
from digest.web.context import WebContext, web_context
from digest.web.security import (
    CSRF_FIELD,
    MemberSessions,
    RateLimiter,
)

#: Articles on one page of a listing, and the most pages a listing goes to.
PAGE_SIZE = 20
MAX_PAGE = 10_000
SEARCH_PAGE_SIZE = 10


@dataclass
class ArchiveDoors:
    """What the archive's routes share beyond ``WebContext``: sign-in links, member sessions
    and the sign-in form's two rate limits (per address, per client)."""

    signin: SignIn
    sessions: MemberSessions
    signin_per_address: RateLimiter
    signin_per_client: RateLimiter


def doors(request: Request) -> ArchiveDoors:
    found: ArchiveDoors = request.app.state.archive
    return found


@dataclass(frozen=True)
class Reader:
    """A signed-in member: who, and their session's nonce (their forms' CSRF binding)."""

    member_id: int
    nonce: str
    email: str

    @property
    def binding(self) -> str:
        return f"member:{self.nonce}"


async def reader_of(request: Request) -> Reader | None:
    """The signed-in member, if the cookie is valid and they are still a member."""
    archive = doors(request)
    found = archive.sessions.read(request)
    if found is None:
        return None
    member = await run_in_threadpool(archive.signin.member, found[0])
    if member is None or member[0] not in SUBSCRIBED_STATUSES:
        return None
    return Reader(found[0], found[1], member[1])


def topic_path(slug: str) -> str:
    return f"/topics/{quote(slug, safe='')}"


def resource_path(slug: str) -> str:
    return f"/resources/{quote(slug, safe='')}"


@dataclass(frozen=True)
class Feeds:
    """The feeds a page announces (autodiscovery) and links to."""

    title: str
    atom: str
    json: str


def feeds_for(title: str, path: str) -> Feeds:
    return Feeds(title, f"{path}/feed.atom", f"{path}/feed.json")


ARCHIVE_FEEDS = feeds_for("The whole archive", "/archive")


def page_number(request: Request) -> int:
    """The ``page`` query parameter: 1 when missing or not a number, at most ``MAX_PAGE``."""
    raw = request.query_params.get("page", "1")
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 7 else 1
    return min(max(number, 1), MAX_PAGE)


@dataclass(frozen=True)
class Pager:
    page: int
    pages: int
    path: str
    params: tuple[tuple[str, str], ...] = ()

    def href(self, page: int) -> str:
        query = urlencode([*self.params, *([("page", str(page))] if page > 1 else [])])
        return f"{self.path}?{query}" if query else self.path

    @property
    def previous(self) -> str | None:
        return self.href(self.page - 1) if self.page > 1 else None

    @property
    def next(self) -> str | None:
        return self.href(self.page + 1) if self.page < self.pages else None


def pager(page: int, total: int, path: str, size: int = PAGE_SIZE, **params: str) -> Pager:
    kept = tuple((k, v) for k, v in params.items() if v)
    return Pager(page, max(1, ceil(total / size)), path, kept)


def _page(
    ctx: WebContext,
    request: Request,
    name: str,
    reader: Reader | None,
    values: dict[str, Any],
    status_code: int = 200,
) -> Response:
    # a visitor's pages have no form that posts (joining is a GET of the subscribe page):
    # no token, and no cookie set for merely reading
    response = ctx.page(
        request,
        name,
        {
            "reader": reader,
            "csrf_token": ctx.csrf.token(reader.binding) if reader else "",
            # their own preferences page, as the links in their digests open it
            "preferences_href": ctx.membership.preferences_url(
                reader.member_id, reader.email, ctx.clock()
            )
            if reader
            else "",
            "visible_key_points": visible_key_points,
            "hidden_count": hidden_count,
            "topic_path": topic_path,
            "resource_path": resource_path,
            "feeds": [ARCHIVE_FEEDS],
            "atom_type": ATOM_TYPE,
            "json_feed_type": JSON_FEED_TYPE,
            "here": request.url.path,
            **values,
        },
        status_code=status_code,
    )
    return response


def _not_found(ctx: WebContext, request: Request, what: str) -> Response:
    return ctx.message(
        request, "Not found", f"There is no {what} here.", 404, link=("/archive", "The archive")
    )


# ---------------------------------------------------------------- the index


def _index_data(ctx: WebContext, page: int, topic_slug: str) -> dict[str, Any] | None:
    now = ctx.clock()
    with Session(ctx.engine) as session:
        topic = catalog.topic_by_slug(session, topic_slug) if topic_slug else None
        if topic_slug and topic is None:
            return None
        ids, total = catalog.archive_ids(
            session,
            now,
            topic_id=topic.id if topic else None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        articles = catalog.archive_articles(session, ids, now)
        topics = catalog.topics_with_articles(session, now)
    return {"articles": articles, "total": total, "topic": topic, "topics": topics}


async def archive_index(request: Request) -> Response:
    ctx = web_context(request)
    page = page_number(request)
    topic_slug = request.query_params.get("topic", "")[:200]
    data = await run_in_threadpool(_index_data, ctx, page, topic_slug)
    if data is None:
        return _not_found(ctx, request, "such topic")
    reader = await reader_of(request)
    topic: Topic | None = data["topic"]
    return _page(
        ctx,
        request,
        "archive.html",
        reader,
        {
            **data,
            "pager": pager(page, data["total"], "/archive", topic=topic.slug if topic else ""),
            "feeds": [
                *([feeds_for(f"Topic: {topic.name}", topic_path(topic.slug))] if topic else []),
                ARCHIVE_FEEDS,
            ],
        },
    )


# ---------------------------------------------------------------- an article


def _article(ctx: WebContext, article_id: int) -> ArticleView | None:
    with Session(ctx.engine) as session:
        found = catalog.archive_articles(session, [article_id], ctx.clock())
    return found[0] if found else None


async def article_page(request: Request) -> Response:
    ctx = web_context(request)
    raw = request.path_params["article_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return _not_found(ctx, request, "such article")
    article = await run_in_threadpool(_article, ctx, int(raw))
    if article is None:
        return _not_found(ctx, request, "such article")
    reader = await reader_of(request)
    return _page(
        ctx,
        request,
        "article.html",
        reader,
        {
            "article": article,
            "topic_slugs": [
                (name, slug) for name, slug in zip(article.topics, _slugs(article), strict=True)
            ],
            "feeds": [
                ARCHIVE_FEEDS,
                *(
                    feeds_for(f"Topic: {n}", topic_path(s))
                    for n, s in zip(article.topics, _slugs(article), strict=True)
                ),
                *(feeds_for(m.name, resource_path(m.slug)) for m in article.mentions if m.slug),
            ],
        },
    )


def _slugs(article: ArticleView) -> list[str]:
    return [topic_slug(name) for name in article.topics]


# ---------------------------------------------------------------- topics and resources


@dataclass(frozen=True)
class Listing:
    articles: list[ArticleView]
    total: int
    following: bool


def _topic_listing(
    ctx: WebContext, slug: str, page: int, member_id: int | None
) -> tuple[Topic, Listing] | None:
    now = ctx.clock()
    with Session(ctx.engine) as session:
        topic = catalog.topic_by_slug(session, slug)
        if topic is None or topic.id is None:
            return None
        ids, total = catalog.archive_ids(
            session, now, topic_id=topic.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        articles = catalog.archive_articles(session, ids, now)
        following = member_id is not None and topic.slug in member_topic_slugs(
            session, [member_id]
        ).get(member_id, set())
    return topic, Listing(articles, total, following)


def _resource_listing(
    ctx: WebContext, slug: str, page: int, member_id: int | None
) -> tuple[Resource, Listing, int] | str | None:
    """The resource, its page of articles and its followers; its current slug (a str) when
    ``slug`` is a merged one; None when nothing has that slug."""
    now = ctx.clock()
    with Session(ctx.engine) as session:
        resource = store.find_resource(session, slug)
        if resource is None or resource.id is None:
            return None
        if resource.slug != slug:
            return resource.slug
        ids, total = catalog.archive_ids(
            session, now, resource_id=resource.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        if not total:  # named only in held or retracted articles: not published
            return None
        articles = catalog.archive_articles(session, ids, now)
        following = member_id is not None and resource.id in store.follows_ids(session, member_id)
        followers = store.follower_count(session, resource.id)
    return resource, Listing(articles, total, following), followers


async def topic_page(request: Request) -> Response:
    ctx = web_context(request)
    slug = request.path_params["slug"][:300]
    page = page_number(request)
    reader = await reader_of(request)
    found = await run_in_threadpool(
        _topic_listing, ctx, slug, page, reader.member_id if reader else None
    )
    if found is None:
        return _not_found(ctx, request, "such topic")
    topic, listing = found
    path = topic_path(topic.slug)
    return _page(
        ctx,
        request,
        "topic.html",
        reader,
        {
            "topic": topic,
            "listing": listing,
            "pager": pager(page, listing.total, path),
            "follow_action": f"{path}/follow",
            "feeds": [feeds_for(f"Topic: {topic.name}", path), ARCHIVE_FEEDS],
        },
    )


async def resource_page(request: Request) -> Response:
    ctx = web_context(request)
    slug = request.path_params["slug"][:300]
    page = page_number(request)
    reader = await reader_of(request)
    found = await run_in_threadpool(
        _resource_listing, ctx, slug, page, reader.member_id if reader else None
    )
    if found is None:
        return _not_found(ctx, request, "such person or organisation")
    if isinstance(found, str):
        return RedirectResponse(resource_path(found), status_code=301)
    resource, listing, followers = found
    path = resource_path(resource.slug)
    return _page(
        ctx,
        request,
        "resource.html",
        reader,
        {
            "resource": resource,
            "listing": listing,
            "followers": followers,
            "pager": pager(page, listing.total, path),
            "follow_action": f"{path}/follow",
            "feeds": [feeds_for(resource.name, path), ARCHIVE_FEEDS],
        },
    )


def _resources(ctx: WebContext, query: str) -> list[store.ResourceRow]:
    with Session(ctx.engine) as session:
        return store.list_resources(session, query=query or None, shown_at=ctx.clock())


async def resources_index(request: Request) -> Response:
    ctx = web_context(request)
    query = " ".join(request.query_params.get("q", "").split())[:100]
    rows = await run_in_threadpool(_resources, ctx, query)
    reader = await reader_of(request)
    return _page(ctx, request, "resources.html", reader, {"rows": rows, "query": query})


# ---------------------------------------------------------------- following


def _follow(
    ctx: WebContext, kind: str, slug: str, member_id: int, on: bool
) -> tuple[str, str] | None:
    """Follow or unfollow; (the page to return to, what happened) or None if not found."""
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        if kind == "topic":
            topic = catalog.topic_by_slug(session, slug)
            if topic is None:
                return None
            changed = follow_topic(session, member_id, topic.name, on, now)
            back, name = topic_path(topic.slug), topic.name
        else:
            resource = store.find_resource(session, slug)
            if resource is None or resource.id is None:
                return None
            back, name = resource_path(resource.slug), resource.name
            keeps_something = bool(member_topic_slugs(session, [member_id]).get(member_id)) or any(
                r != resource.id for r in store.follows_ids(session, member_id)
            )
            changed = (on or keeps_something) and store.follow(session, member_id, resource.id, on)
    if changed:
        return back, (f"You follow {name}." if on else f"You no longer follow {name}.")
    if not on:
        return back, (
            f"{name} is all you follow: choose something else on your preferences page first."
        )
    return back, f"You already follow {name}."


async def follow(request: Request) -> Response:
    ctx = web_context(request)
    reader = await reader_of(request)
    kind = "topic" if request.url.path.startswith("/topics/") else "resource"
    slug = request.path_params["slug"][:300]
    if reader is None:
        return RedirectResponse(f"/signin?{urlencode({'next': request.url.path[:-7]})}", 303)
    form = await request.form()
    ctx.csrf.check(reader.binding, str(form.get(CSRF_FIELD) or ""))
    on = form.get("action") != "unfollow"
    done = await run_in_threadpool(_follow, ctx, kind, slug, reader.member_id, on)
    if done is None:
        return _not_found(ctx, request, "such page")
    back, said = done
    return ctx.message(request, "Following", said, link=(back, "Back"))


# ---------------------------------------------------------------- search


def _search(
    ctx: WebContext, query: str, page: int, member: bool
) -> tuple[search.Results, dict[int, ArticleView]]:
    with Session(ctx.engine) as session:
        results = search.search(
            session,
            query,
            member=member,
            limit=SEARCH_PAGE_SIZE,
            offset=(page - 1) * SEARCH_PAGE_SIZE,
            shown_at=ctx.clock(),
        )
        ids = [h.article_id for h in results.hits]
        shown = catalog.archive_articles(session, ids, ctx.clock())
    return results, {a.id: a for a in shown}


async def search_page(request: Request) -> Response:
    ctx = web_context(request)
    raw = request.query_params.get("q", "")
    query = search.clean_query(raw)
    page = page_number(request)
    reader = await reader_of(request)
    results, articles = await run_in_threadpool(_search, ctx, query, page, reader is not None)
    hits = [(h, articles[h.article_id]) for h in results.hits if h.article_id in articles]
    return _page(
        ctx,
        request,
        "search.html",
        reader,
        {
            "query": query,
            "hits": hits,
            "total": results.total,
            "pager": pager(page, results.total, "/search", SEARCH_PAGE_SIZE, q=query),
        },
    )


ROUTES = [
    Route("/archive", archive_index, methods=["GET"]),
    Route("/articles/{article_id}", article_page, methods=["GET"]),
    Route("/topics/{slug:path}/follow", follow, methods=["POST"]),
    Route("/topics/{slug:path}", topic_page, methods=["GET"]),
    Route("/resources", resources_index, methods=["GET"]),
    Route("/resources/{slug}/follow", follow, methods=["POST"]),
    Route("/resources/{slug}", resource_page, methods=["GET"]),
    Route("/search", search_page, methods=["GET"]),
]
