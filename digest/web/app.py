"""The ASGI app factory: ``create_app(settings)`` wires routes, error pages and headers.

No module-level app: ``digest web`` and the tests each build one from their own settings,
store, clock and transport, so nothing is shared between them but the code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.archive.signin import SignIn
from digest.clicks import ClickCounter
from digest.clock import system_clock
from digest.db import make_engine, store_unreachable, unreachable_reason
from digest.editions import Editions
from digest.feedback.hooks import Webhooks
from digest.feedback.intake import Intake
from digest.feedback.providers import CertificateCache, Fetch, https_get
from digest.mailer import TransportFactory, make_transport
from digest.members import Membership
from digest.outbound import Outbound
from digest.resources import static_folders
from digest.settings import Settings
from digest.tokens import InvalidToken, TokenSigner
from digest.web import (
    archive,
    articles,
    audit_pages,
    click_redirect,
    dashboard,
    edition_pages,
    editor,
    feeds,
    members,
    ops,
    signin,
    webhooks,
)
from digest.web.click_redirect import ArticleURLs
from digest.web.context import (
    WebContext,
    page_environment,
    web_context,
)
from digest.web.security import (
    CSRF,
    CSRFError,
    EditorAuth,
    EditorDisabled,
    EditorLoginRequired,
    MemberSessions,
    RateLimiter,
    login_redirect_target,
)

log = logging.getLogger(__name__)

#: Pages load only their own CSS and script; no inline script, no framing by other sites.
DEFAULT_CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
DEFAULT_HEADERS = {
    b"content-security-policy": DEFAULT_CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",  # links carry tokens: never leak them in Referer
    b"cache-control": b"no-store",
}


class SecurityHeaders:
    """Adds the default headers to every response that has not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                static = scope.get("path", "").startswith("/static/")
                for name, value in DEFAULT_HEADERS.items():
                    if name not in present and not (static and name == b"cache-control"):
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: The largest request body read: every form here is a few fields (a preferences form with
#: every topic ticked is well under 16 KB). Larger bodies are refused before they are read.
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, by Content-Length or as they stream.

    Forms are parsed before their tokens are checked, so without a bound anyone could make
    the process hold a body of any size in memory.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        prefixes: dict[str, int] | None = None,
    ) -> None:
        self.app, self.default = app, limit
        # larger limits for some paths (provider webhooks), longest prefix first
        self.prefixes = sorted((prefixes or {}).items(), key=lambda item: -len(item[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((n for p, n in self.prefixes if path.startswith(p)), self.default)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        # a declared length is the body's length (the server frames it); chunked bodies count
        seen = 0 if declared is None else int(declared) if declared.isdigit() else limit + 1

        async def bounded() -> Message:
            # raised where the endpoint reads the body, so the app's 413 page answers
            nonlocal seen
            if seen > limit:
                raise HTTPException(413)
            message = await receive()
            if declared is None:
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413)
            return message

        await self.app(scope, bounded, send)


class HostCheck:
    """Serves only the site's own host names: ``base_url``'s, plus ``allowed_hosts``.

    Links and redirects (a trailing slash's, for one) are built from the Host header, so a
    request for another name must not be answered as if it were this site: it gets 400.
    ``/healthz`` and ``/metrics`` answer whatever the name (load balancers and scrapers
    often use an address); neither builds a link. Starlette's TrustedHostMiddleware does
    the matching (``*.example.org`` patterns included).
    """

    UNCHECKED = frozenset({"/healthz", "/metrics"})

    def __init__(self, app: ASGIApp, hosts: Sequence[str]) -> None:
        self.app = app
        self.checked = TrustedHostMiddleware(app, allowed_hosts=list(hosts), www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in self.UNCHECKED:
            await self.app(scope, receive, send)
            return
        await self.checked(scope, receive, send)


#: One machine's own names: the app answers to them whatever ``base_url`` says. A link built
#: from one leads only to the reader's own machine, so it can poison nothing, and operators'
#: checks on the host itself (curl, a health probe, a browser over an SSH tunnel) use them.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def site_hosts(settings: Settings) -> list[str]:
    """The host names the app answers to: ``base_url``'s, ``allowed_hosts`` and loopback."""
    own = urlsplit(settings.base_url).hostname
    hosts = [*([own] if own else []), *settings.allowed_hosts]
    return hosts + [name for name in LOOPBACK_NAMES if name not in hosts]


async def _invalid_token(request: Request, exc: Exception) -> Response:
    ctx = web_context(request)
    reason = exc.reason if isinstance(exc, InvalidToken) else ""
    if reason == "expired":
        text = "This link has expired. Use the link in your most recent email, or subscribe again."
    elif reason == "stale":
        text = (
            "This confirmation link is older than your unsubscribe; subscribe again for a new one."
        )
    else:
        text = (
            "This link is not valid: it may have been altered or cut short. "
            "Copy the whole link from the email."
        )
    return ctx.message(
        request, "This link does not work", text, 400, link=("/subscribe", "Subscribe")
    )


async def _csrf(request: Request, exc: Exception) -> Response:
    return web_context(request).message(
        request,
        "Form expired",
        "This form was not sent from this site's own page, or the page is too old. "
        "Go back, reload the page and try again.",
        403,
    )


async def _editor_disabled(request: Request, exc: Exception) -> Response:
    return web_context(request).message(
        request,
        "Editorial pages are disabled",
        "There is no editor account yet. Create one with `digest editors add EMAIL` (or, to "
        "bootstrap the first one, set DIGEST_EDITOR_PASSWORD in the environment of the web "
        "app and restart it).",
        503,
    )


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.method in ("GET", "HEAD"):
        return RedirectResponse(login_redirect_target(request), status_code=303)
    return web_context(request).message(
        request,
        "Sign-in required",
        "Sign in as an editor first.",
        401,
        link=("/editor/login", "Sign in"),
        headers={"WWW-Authenticate": 'FormLogin realm="editor"'},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    titles = {404: "Not found", 405: "Method not allowed", 413: "Too large"}
    texts = {413: "What was sent is larger than any form here takes."}
    return web_context(request).message(
        request,
        titles.get(status, "Error"),
        texts.get(status, "There is nothing here."),
        status,
        headers=getattr(exc, "headers", None),
    )


async def _store_error(request: Request, exc: Exception) -> Response:
    """A store that cannot be reached: said once (``ops.STORE``), a 503 page, no traceback.
    Any other database error goes on to ``_server_error``."""
    if not store_unreachable(exc):
        raise exc
    ops.STORE.failed(unreachable_reason(exc))
    return web_context(request).message(
        request,
        "Back in a moment",
        "We cannot reach our records right now. Please try again in a minute.",
        503,
        headers={"Retry-After": "30"},
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    response = web_context(request).message(
        request, "Something went wrong", "Please try again in a moment.", 500
    )
    # Starlette sends this page from outside the middleware stack: add the headers here
    for name, value in DEFAULT_HEADERS.items():
        response.headers.setdefault(name.decode(), value.decode())
    return response


async def _client_gone(request: Request, exc: Exception) -> Response:
    # the client went away (or was cut off for being too slow) while its body was read:
    # nobody is left to answer, and nothing went wrong here
    return Response(status_code=400)


async def _home(request: Request) -> Response:
    return RedirectResponse("/subscribe", status_code=303)


def static_files(templates_dir: str) -> StaticFiles:
    """``/static/``: the operator's ``web/static/`` files (if any) over the built-in ones."""
    folders = [str(folder) for folder in static_folders(templates_dir)]
    static = StaticFiles(directory=folders[-1])
    static.all_directories = folders  # looked up in order, first match wins
    return static


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    clock: Callable[[], datetime] | None = None,
    transport_factory: TransportFactory | None = None,
    certificate_fetch: Fetch | None = None,
) -> Starlette:
    """An app serving members, editors and operators from ``settings``' store.

    ``certificate_fetch`` fetches SNS signing certificates (and confirms subscriptions); by
    default over https from the SNS hosts. Raises ValueError without a secret key: links,
    forms and sessions are all signed with it.
    """
    if not settings.secret_key:
        raise ValueError(
            "DIGEST_SECRET_KEY is not set: the web app signs every link, form and session"
        )
    engine = engine or make_engine(settings.database_url)
    clock = clock or system_clock
    if settings.editor_password:
        log.warning(
            "DIGEST_EDITOR_PASSWORD is set: it is only a bootstrap, signing in the first editor "
            "while no editor account exists; use `digest editors add` and then remove it"
        )
    transports = transport_factory or (lambda: make_transport(settings))
    signer = TokenSigner(settings.secret_key)
    editions = Editions(settings)
    outbound = Outbound(editions, transports)
    # mails one address may be sent from the subscribe form: many client addresses asking
    # for one victim's address must not turn the form into a mail cannon
    per_address = RateLimiter(3, 24 * 3600)
    ctx = WebContext(
        settings=settings,
        engine=engine,
        clock=clock,
        editions=editions,
        outbound=outbound,
        membership=Membership(engine, settings, signer, outbound, clock, per_address.hit),
        csrf=CSRF(settings.secret_key),
        editor=EditorAuth(settings, engine, clock),
        subscribe_limiter=RateLimiter(
            settings.subscribe_rate_limit, settings.subscribe_rate_window_seconds
        ),
        test_copy_limiter=RateLimiter(30, 3600),
        pages=page_environment(settings.templates_dir),
        webhooks=Webhooks(
            engine,
            settings,
            Intake(engine, settings, clock),
            clock,
            CertificateCache(certificate_fetch or https_get, folder=settings.sns_certificate_dir),
        ),
        clicks=ClickCounter(
            engine,
            scanner_seconds=settings.click_scanner_seconds,
            scanner_links=settings.click_scanner_links,
            clock=lambda: clock().timestamp(),
            wall_clock=clock,
            track_members=settings.track_member_clicks,
        ),
        article_urls=ArticleURLs(engine),
    )
    routes = [
        Route("/", _home, methods=["GET"]),
        *members.ROUTES,
        *feeds.ROUTES,  # before the pages: /topics/<slug>/feed.atom is not a topic's page
        *archive.ROUTES,
        *signin.ROUTES,
        *edition_pages.ROUTES,
        *dashboard.ROUTES,
        *editor.ROUTES,
        *audit_pages.ROUTES,
        *articles.ROUTES,
        *ops.ROUTES,
        *webhooks.ROUTES,
        *click_redirect.ROUTES,
        Mount("/static", static_files(settings.templates_dir), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # clicks are counted in memory and written every click_flush_seconds, and at the end
        ctx.clicks.start(settings.click_flush_seconds)
        try:
            yield
        finally:
            ctx.clicks.stop()

    app = Starlette(
        lifespan=lifespan,
        routes=routes,
        exception_handlers={
            InvalidToken: _invalid_token,
            CSRFError: _csrf,
            EditorDisabled: _editor_disabled,
            EditorLoginRequired: _login_required,
            ClientDisconnect: _client_gone,
            DBAPIError: _store_error,
            psycopg.Error: _store_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.web = ctx
    app.state.archive = archive.ArchiveDoors(
        signin=SignIn(engine, outbound, settings.secret_key, settings.base_url, clock),
        sessions=MemberSessions(settings.secret_key),
        # a few links an hour to one address (asking again answers the same, sends nothing);
        # a client asking for many addresses is refused outright
        signin_per_address=RateLimiter(3, 3600),
        signin_per_client=RateLimiter(20, 3600),
    )
    app.state.metrics_listener = False
    app.add_middleware(
        BodyLimit,
        prefixes={
            "/webhooks/": webhooks.MAX_WEBHOOK_BYTES,
            # an article file, and the multipart form around it
            "/editor/articles/upload": settings.max_upload_bytes + MAX_BODY_BYTES,
        },
    )
    app.add_middleware(HostCheck, hosts=site_hosts(settings))
    app.add_middleware(SecurityHeaders)
    return app


def create_metrics_app(app: Starlette) -> Starlette:
    """``/metrics`` and ``/healthz`` of ``app`` alone, for the ``metrics_listen`` address:
    the same store, settings and clock, nothing members or editors see."""
    metrics = Starlette(
        routes=list(ops.ROUTES), exception_handlers={HTTPException: _plain_http_error}
    )
    metrics.state.web = app.state.web
    metrics.state.metrics_listener = True
    return metrics


async def _plain_http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return PlainTextResponse(f"{status}\n", status_code=status)
