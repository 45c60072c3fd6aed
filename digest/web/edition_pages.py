"""Editions as web pages: a digest's "View in browser" copy.

``/view/<token>`` names one delivery (the token is signed and expires after
``view_link_days``) and shows that delivery's edition, rendered from the ledger's article ids
by the email's own templates, with no member in it: no name, no address, no preferences or
unsubscribe token, so a forwarded link exposes nothing personal. A forged, altered or expired
link, or a delivery that is gone, gets a 404 page that says so. ``edition_page`` renders any
edition that way, for other routes that show editions.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import catalog, ledger
from digest.archive.store import follows_ids
from digest.content import ArticleView
from digest.members.store import member_topic_slugs
from digest.tokens import InvalidToken
from digest.web.context import WebContext, web_context

#: An email's HTML styles itself inline and in <style> blocks; nothing else may load or run.
EMAIL_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)


def edition_page(
    ctx: WebContext,
    edition: str,
    articles: Sequence[ArticleView],
    topic_slugs: Collection[str] = (),
    resource_ids: Collection[int] = (),
) -> HTMLResponse:
    """An edition as a page: the email's layout, no member, a "Subscribe" link."""
    html = ctx.editions.web_copy(edition, articles, topic_slugs, resource_ids)
    return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_PAGE_CSP})


def _not_found(request: Request, ctx: WebContext) -> Response:
    return ctx.message(
        request,
        "This copy is not available",
        "This link to a digest does not work: it has expired, or it was altered or cut short. "
        "The email itself still has everything in it.",
        404,
        link=("/subscribe", "Subscribe"),
    )


def _delivery(
    ctx: WebContext, delivery_id: int
) -> tuple[str, list[ArticleView], set[str], list[int]] | None:
    with Session(ctx.engine) as session:
        recorded = ledger.delivery_edition(session, delivery_id)
        if recorded is None:
            return None
        found = catalog.articles_by_id(session, recorded.article_ids)
        slugs = member_topic_slugs(session, [recorded.subscriber_id]).get(
            recorded.subscriber_id, set()
        )
        follows = follows_ids(session, recorded.subscriber_id)
    articles = [found[i] for i in recorded.article_ids if i in found]
    return (recorded.edition, articles, slugs, follows) if articles else None


async def view_page(request: Request) -> Response:
    ctx = web_context(request)
    max_age = timedelta(days=ctx.settings.view_link_days)
    try:
        delivery_id = ctx.editions.signer.verify_view(
            request.path_params["token"], ctx.clock(), max_age
        )
    except InvalidToken:
        return _not_found(request, ctx)
    found = await run_in_threadpool(_delivery, ctx, delivery_id)
    if found is None:
        return _not_found(request, ctx)
    edition, articles, slugs, follows = found
    return await run_in_threadpool(edition_page, ctx, edition, articles, slugs, follows)


ROUTES = [Route("/view/{token}", view_page, methods=["GET"])]
