"""``/c/<token>``: an article link followed from a digest. Counts the click in memory
(``digest.clicks.ClickCounter``) and redirects to the article's stored URL, and only there:
the token names an article, never a destination, so this is no open redirect."""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import Engine
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.models import Article
from digest.render import http_url
from digest.tokens import InvalidToken
from digest.web.context import web_context
from digest.web.security import client_address


class ArticleURLs:
    """Article id -> stored URL, kept in memory (an article's URL is its identity and does
    not change), so a click costs no query once its article has been clicked."""

    def __init__(self, engine: Engine, size: int = 20_000) -> None:
        self.engine, self.size = engine, size
        self._urls: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, article_id: int) -> str | None:
        with self._lock:
            url = self._urls.get(article_id)
        if url is not None:
            return url
        with Session(self.engine) as session:
            article = session.get(Article, article_id)
            url = http_url(article.url) if article is not None else ""
        if not url:
            return None
        with self._lock:
            self._urls[article_id] = url
            while len(self._urls) > self.size:
                self._urls.popitem(last=False)
        return url


def _not_found(request: Request) -> Response:
    return web_context(request).message(
        request,
        "This link does not work",
        "This article link is not valid: it may have been altered or cut short. "
        "Copy the whole link from the email.",
        404,
    )


async def follow(request: Request) -> Response:
    ctx = web_context(request)
    try:
        click = ctx.editions.signer.verify_click(str(request.path_params["token"]))
    except InvalidToken:
        return _not_found(request)
    url = ctx.article_urls.get(click.article_id)
    if url is None:
        return _not_found(request)
    if request.method == "GET":  # HEAD: link checkers and scanners; never counted
        ctx.clicks.record(click, client_address(request))
    return RedirectResponse(url, status_code=302)


ROUTES = [Route("/c/{token}", follow, methods=["GET", "HEAD"])]
