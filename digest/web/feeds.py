"""The archive's feeds and sitemap over HTTP: Atom and JSON Feed for the whole archive, each
topic and each resource, with ``ETag``/``Last-Modified`` and 304 answers; ``/sitemap.xml``.

The documents are written by ``archive.feeds``; here the articles are read, the validators
compared and the caching headers set (feeds are public: caches may keep them a few minutes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from xml.sax.saxutils import escape

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import catalog
from digest.archive import feeds, store
from digest.content import ArticleView
from digest.web.archive import resource_path, topic_path
from digest.web.context import WebContext, web_context

#: Feeds may be cached this long by readers and proxies.
FEED_MAX_AGE = 300
#: The most addresses one sitemap lists (the protocol's limit).
SITEMAP_LIMIT = 50_000

_KINDS: dict[str, tuple[str, Callable[[feeds.FeedInfo, list[ArticleView], datetime], bytes]]] = {
    "atom": (feeds.ATOM_TYPE, lambda info, articles, now: feeds.atom(info, articles, now)),
    "json": (feeds.JSON_FEED_TYPE, lambda info, articles, now: feeds.json_feed(info, articles)),
}


def _info(ctx: WebContext, title: str, description: str, path: str) -> feeds.FeedInfo:
    base = ctx.settings.base_url.rstrip("/")
    site = ctx.settings.site_name
    return feeds.FeedInfo(
        title=f"{site}: {title}" if title else site,
        description=description,
        page_url=f"{base}{path}",
        atom_url=f"{base}{path}/feed.atom",
        json_url=f"{base}{path}/feed.json",
        site_name=site,
        base_url=base,
    )


def _read(
    ctx: WebContext, scope: str, slug: str
) -> tuple[feeds.FeedInfo, list[ArticleView], datetime] | str | None:
    """The feed's description, its articles and when they last changed; a redirect path
    (str) for a merged resource's old slug; None when there is no such topic or resource."""
    now = ctx.clock()
    with Session(ctx.engine) as session:
        topic_id = resource_id = None
        if scope == "topic":
            topic = catalog.topic_by_slug(session, slug)
            if topic is None:
                return None
            topic_id = topic.id
            path = topic_path(topic.slug)
            info = _info(ctx, f"Topic: {topic.name}", f"Articles on {topic.name}.", path)
        elif scope == "resource":
            resource = store.find_resource(session, slug)
            if resource is None:
                return None
            if resource.slug != slug:
                return resource_path(resource.slug)
            resource_id = resource.id
            info = _info(
                ctx,
                resource.name,
                resource.description or f"Articles that mention {resource.name}.",
                resource_path(resource.slug),
            )
        else:
            info = _info(ctx, "", f"The {ctx.settings.site_name} archive.", "/archive")
        ids, _ = catalog.archive_ids(
            session, now, topic_id=topic_id, resource_id=resource_id, limit=feeds.FEED_ENTRIES
        )
        if scope == "resource" and not ids:  # named only in held or retracted articles
            return None
        articles = catalog.archive_articles(session, ids, now)
        changed = catalog.last_change(session, ids)
    newest = max((a.first_seen_at for a in articles), default=None)
    last = max((t for t in (changed, newest) if t is not None), default=now)
    return info, articles, last


async def _feed(request: Request, scope: str) -> Response:
    ctx = web_context(request)
    slug = request.path_params.get("slug", "")[:300]
    kind = request.path_params["kind"]
    if kind not in _KINDS:
        return ctx.message(request, "Not found", "There is no such feed.", 404)
    found = await run_in_threadpool(_read, ctx, scope, slug)
    if found is None:
        return ctx.message(request, "Not found", "There is no such feed.", 404)
    if isinstance(found, str):
        return RedirectResponse(f"{found}/feed.{kind}", status_code=301)
    info, articles, last = found
    media_type, write = _KINDS[kind]
    body = await run_in_threadpool(write, info, articles, last)
    etag = feeds.etag_of(body)
    headers = {
        "ETag": etag,
        "Last-Modified": feeds.http_date(last),
        "Cache-Control": f"public, max-age={FEED_MAX_AGE}",
        "Vary": "Accept-Encoding",
    }
    if feeds.not_modified(
        etag, last, request.headers.get("if-none-match"), request.headers.get("if-modified-since")
    ):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=f"{media_type}; charset=utf-8", headers=headers)


async def archive_feed(request: Request) -> Response:
    return await _feed(request, "archive")


async def topic_feed(request: Request) -> Response:
    return await _feed(request, "topic")


async def resource_feed(request: Request) -> Response:
    return await _feed(request, "resource")


def _sitemap(ctx: WebContext) -> bytes:
    now = ctx.clock()
    base = ctx.settings.base_url.rstrip("/")
    entries: list[tuple[str, datetime | None]] = [(f"{base}/archive", None)]
    with Session(ctx.engine) as session:
        for topic, _count in catalog.topics_with_articles(session, now):
            entries.append((f"{base}{topic_path(topic.slug)}", None))
        for row in store.list_resources(session, shown_at=now):
            entries.append((f"{base}{resource_path(row.slug)}", None))
        for article_id, seen in catalog.archive_stamps(session, now, SITEMAP_LIMIT - len(entries)):
            entries.append((f"{base}/articles/{article_id}", seen))
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">',
    ]
    for url, modified in entries[:SITEMAP_LIMIT]:
        when = f"<lastmod>{modified.date().isoformat()}</lastmod>" if modified else ""
        lines.append(f"<url><loc>{escape(url)}</loc>{when}</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


async def sitemap(request: Request) -> Response:
    ctx = web_context(request)
    body = await run_in_threadpool(_sitemap, ctx)
    return Response(
        body,
        media_type="application/xml",
        headers={"Cache-Control": f"public, max-age={FEED_MAX_AGE}"},
    )


ROUTES = [
    Route("/archive/feed.{kind}", archive_feed, methods=["GET", "HEAD"]),
    Route("/topics/{slug:path}/feed.{kind}", topic_feed, methods=["GET", "HEAD"]),
    Route("/resources/{slug}/feed.{kind}", resource_feed, methods=["GET", "HEAD"]),
    Route("/sitemap.xml", sitemap, methods=["GET", "HEAD"]),
]
