"""What every route shares: settings, store, clock, the editions and outbound door, the membership
lifecycle, CSRF, editor sessions, rate limits and the page renderer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse

from digest.clicks import ClickCounter
from digest.editions import Editions
from digest.feedback.hooks import Webhooks
from digest.members import Membership
from digest.outbound import Outbound
from digest.resources import template_loader
from digest.settings import Settings
from digest.web.security import CSRF, EditorAuth, RateLimiter

if TYPE_CHECKING:
    from digest.web.click_redirect import ArticleURLs


def page_environment(templates_dir: str | Path = "") -> jinja2.Environment:
    """Jinja2 for web pages (``templates/web/``, any of them overridden from ``templates_dir``):
    always autoescaped, undefined names are errors."""
    env = jinja2.Environment(
        loader=template_loader(templates_dir, "web"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@dataclass
class WebContext:
    settings: Settings
    engine: Engine
    clock: Callable[[], datetime]
    editions: Editions
    outbound: Outbound
    membership: Membership
    csrf: CSRF
    editor: EditorAuth
    subscribe_limiter: RateLimiter
    test_copy_limiter: RateLimiter
    pages: jinja2.Environment
    webhooks: Webhooks
    clicks: ClickCounter
    article_urls: ArticleURLs

    def page(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        values = {
            "site_name": self.settings.site_name,
            "request": request,
            "editor_logged_in": False,
            **(context or {}),
        }
        body = self.pages.get_template(name).render(values)
        return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))

    def message(
        self,
        request: Request,
        title: str,
        text: str,
        status_code: int = 200,
        link: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """A one-paragraph page: confirmations, refusals and errors all look the same."""
        return self.page(
            request,
            "message.html",
            {"title": title, "text": text, "link": link},
            status_code=status_code,
            headers=headers,
        )

    def too_many(self, request: Request, title: str, text: str, wait: float) -> HTMLResponse:
        """A rate limit's refusal: 429 with the seconds until the next try would pass."""
        return self.message(request, title, text, 429, headers={"Retry-After": str(int(wait))})


def web_context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.web
    return ctx
