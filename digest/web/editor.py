"""Editor pages: the upcoming issue, previews as a member or a topic set, and test copies.

Everything here is behind the editor session. Previews go through ``Editions.message_for``
(``digest.preview``), the call sending uses, so what an editor sees is what a
member gets. A test copy goes through the configured transport but is never a delivery: no
ledger row is read for writing or written, so what members will get does not change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.catalog import all_topics
from digest.content import MemberView
from digest.db import session_scope
from digest.editors import SignedIn, audit
from digest.members import MemberError, normalize_email, parse_frequency
from digest.members.rules import DEFAULT_FREQUENCY
from digest.models import Editor
from digest.outbound import Sent
from digest.preview import Preview, Upcoming, preview, upcoming
from digest.web.context import WebContext, web_context
from digest.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    EDITOR_COOKIE,
    LINK_LIFETIME,
    EditorDisabled,
    client_address,
    cookie_binding,
    editor_binding,
    ensure_csrf_cookie,
    safe_next,
    set_cookie,
)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ login


def _login_page(
    request: Request, ctx: WebContext, error: str = "", status_code: int = 200, email: str = ""
) -> Response:
    binding, new_nonce = ensure_csrf_cookie(request)
    response = ctx.page(
        request,
        "editor/login.html",
        {
            "error": error,
            "email": email,
            "next": safe_next(request.query_params.get("next")),
            "csrf_token": ctx.csrf.token(binding),
            "bootstrap": ctx.editor.bootstrapping(),
        },
        status_code=status_code,
    )
    if new_nonce:
        set_cookie(response, request, CSRF_COOKIE, new_nonce)
    return response


async def login_form(request: Request) -> Response:
    ctx = web_context(request)
    if not await run_in_threadpool(ctx.editor.enabled):
        raise EditorDisabled()
    return await run_in_threadpool(_login_page, request, ctx)


async def login(request: Request) -> Response:
    ctx = web_context(request)
    if not await run_in_threadpool(ctx.editor.enabled):
        raise EditorDisabled()
    form = await request.form()
    ctx.csrf.check(cookie_binding(request), str(form.get(CSRF_FIELD) or ""))
    email = str(form.get("email") or "")[:320]
    password = str(form.get("password") or "")[:1024]
    client = client_address(request)
    result = await run_in_threadpool(ctx.editor.sign_in, email, password, client)
    if result.wait is not None:
        log.warning("editor sign-in for %r refused (locked) from %s", email, client)
        return ctx.too_many(
            request,
            "Sign-in locked for a while",
            "Too many wrong passwords for this account (or from your network). "
            f"Try again in {max(1, round(result.wait / 60))} minutes.",
            result.wait,
        )
    if not result.token:
        log.warning("failed editor sign-in for %r from %s", email, client)
        return await run_in_threadpool(
            _login_page, request, ctx, "Wrong email address or password.", 401, email
        )
    response = RedirectResponse(safe_next(str(form.get("next") or "")), status_code=303)
    set_cookie(
        response,
        request,
        EDITOR_COOKIE,
        result.token,
        path="/editor",
        samesite="strict",
        max_age=ctx.editor.max_age,
    )
    return response


def _mail_link(ctx: WebContext, editor: Editor, token: str) -> None:
    url = f"{ctx.settings.base_url.rstrip('/')}/editor/login/link/{token}"
    reader = MemberView(
        id=0, email=editor.email, name="", status="active", frequency="daily",
        timezone="UTC", send_hour=0,
    )  # fmt: skip
    minutes = int(LINK_LIFETIME.total_seconds() // 60)
    sent = ctx.outbound.notice(
        "editor_signin", reader, {"signin_url": url, "minutes": minutes}, ctx.clock()
    )
    if not sent.ok:
        log.warning("sign-in link for %s not sent: %s", editor.email, sent.server_said)


async def link_request(request: Request) -> Response:
    """Mail a one-time sign-in link; the answer is the same whether or not the address is an
    editor's, and a few a hour per account and network. The mail goes out after the answer
    (a background task), so not even the time the answer takes tells."""
    ctx = web_context(request)
    if not await run_in_threadpool(ctx.editor.enabled):
        raise EditorDisabled()
    form = await request.form()
    ctx.csrf.check(cookie_binding(request), str(form.get(CSRF_FIELD) or ""))
    email = str(form.get("email") or "")[:320]
    links: list[tuple[Editor, str]] = []

    def send(editor: Editor, token: str) -> None:
        links.append((editor, token))

    allowed = await run_in_threadpool(ctx.editor.request_link, email, client_address(request), send)
    if not allowed:
        return ctx.too_many(
            request,
            "Too many sign-in links",
            "Sign-in links for this address were asked for too often. Try again later.",
            3600,
        )
    response = ctx.message(
        request,
        "Check your mail",
        "If that address belongs to an editor, a sign-in link is on its way. It works once, "
        f"for {int(LINK_LIFETIME.total_seconds() // 60)} minutes.",
        link=("/editor/login", "Back to sign-in"),
    )
    if links:
        response.background = BackgroundTask(_mail_link, ctx, *links[0])
    return response


async def link_page(request: Request) -> Response:
    """The link from the mail opens a page with a button: mail scanners that open every link
    do not spend it, and the sign-in is a POST with its CSRF token."""
    ctx = web_context(request)
    binding, new_nonce = ensure_csrf_cookie(request)
    response = ctx.page(
        request,
        "editor/link.html",
        {"token": str(request.path_params["token"])[:600], "csrf_token": ctx.csrf.token(binding)},
    )
    if new_nonce:
        set_cookie(response, request, CSRF_COOKIE, new_nonce)
    return response


async def link_sign_in(request: Request) -> Response:
    ctx = web_context(request)
    form = await request.form()
    ctx.csrf.check(cookie_binding(request), str(form.get(CSRF_FIELD) or ""))
    token = str(request.path_params["token"])[:600]
    result = await run_in_threadpool(ctx.editor.sign_in_with_link, token, client_address(request))
    if not result.token:
        return ctx.message(
            request,
            "This sign-in link does not work",
            "It was used already, is more than "
            f"{int(LINK_LIFETIME.total_seconds() // 60)} minutes old, or was altered. "
            "Ask for a new one.",
            400,
            link=("/editor/login", "Sign in"),
        )
    response = RedirectResponse("/editor", status_code=303)
    set_cookie(
        response,
        request,
        EDITOR_COOKIE,
        result.token,
        path="/editor",
        samesite="strict",
        max_age=ctx.editor.max_age,
    )
    return response


async def logout(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    form = await request.form()
    ctx.csrf.check(editor_binding(signed), str(form.get(CSRF_FIELD) or ""))
    await run_in_threadpool(ctx.editor.sign_out, request)
    response = RedirectResponse("/editor/login", status_code=303)
    response.delete_cookie(EDITOR_COOKIE, path="/editor")
    return response


async def editor_form(request: Request, signed: SignedIn) -> FormData:
    """The posted form of a signed-in editor, its CSRF token checked (every editor POST)."""
    ctx = web_context(request)
    form = await request.form()
    ctx.csrf.check(editor_binding(signed), str(form.get(CSRF_FIELD) or ""))
    return form


def editor_page(
    request: Request,
    ctx: WebContext,
    signed: SignedIn,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
) -> HTMLResponse:
    """An editor page: the nav, who is signed in, and the session's CSRF token."""
    return ctx.page(
        request,
        name,
        {
            **context,
            "editor_logged_in": True,
            "editor": signed,
            "csrf_token": ctx.csrf.token(editor_binding(signed)),
        },
        status_code=status_code,
    )


_editor_page = editor_page


# ------------------------------------------------------------------ upcoming issue


def _upcoming(ctx: WebContext, topic: str | None) -> tuple[Upcoming, list[tuple[str, str]]]:
    found = upcoming(ctx.engine, ctx.settings, ctx.clock(), topic)
    with Session(ctx.engine) as session:
        return found, [(t.slug, t.name) for t in all_topics(session)]


async def upcoming_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    topic = request.query_params.get("topic") or None
    data, topics = await run_in_threadpool(_upcoming, ctx, topic)
    return _editor_page(
        request,
        ctx,
        signed,
        "editor/upcoming.html",
        {"data": data, "topic": topic or "", "all_topics": topics},
    )


# ------------------------------------------------------------------ preview


@dataclass(frozen=True)
class PreviewRequest:
    email: str
    topics: tuple[str, ...]
    frequency: str

    @classmethod
    def from_params(cls, params: QueryParams | Any) -> PreviewRequest:
        email = str(params.get("email") or "").strip()
        topics = tuple(str(t) for t in params.getlist("topics") if str(t).strip())
        try:
            frequency = parse_frequency(str(params.get("frequency") or ""))
        except MemberError:  # a hand-edited link: preview the default rhythm
            frequency = DEFAULT_FREQUENCY
        return cls(email, topics, frequency)

    def query(self) -> list[tuple[str, str]]:
        if self.email:
            return [("email", self.email)]
        return [("frequency", self.frequency), *(("topics", t) for t in self.topics)]


def build_preview(ctx: WebContext, req: PreviewRequest) -> Preview | None:
    """A member's next issue (exactly ``digest preview``), or a topic set's; None if empty."""
    return preview(
        ctx.engine,
        ctx.settings,
        ctx.editions,
        ctx.clock(),
        email=req.email or None,
        topics=req.topics,
        frequency=req.frequency,
    )


def _preview_or_message(
    request: Request, ctx: WebContext, result: Preview | None | Exception
) -> Response | None:
    if isinstance(result, LookupError):
        return ctx.message(request, "No such member", str(result), 404)
    if result is None:
        return ctx.message(
            request,
            "Nothing to preview",
            "This issue would be empty right now: no new articles on these topics.",
            404,
        )
    return None


async def _preview(ctx: WebContext, req: PreviewRequest) -> Preview | None | Exception:
    if not req.email and not req.topics:
        return LookupError("Choose a member or at least one topic.")
    try:
        return await run_in_threadpool(build_preview, ctx, req)
    except LookupError as exc:
        return exc


async def preview_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    req = PreviewRequest.from_params(request.query_params)
    if not req.email and not req.topics:
        topics = await run_in_threadpool(_topic_names, ctx)
        return _editor_page(
            request,
            ctx,
            signed,
            "editor/preview.html",
            {"result": None, "req": req, "all_topics": topics},
        )
    result = await _preview(ctx, req)
    refusal = _preview_or_message(request, ctx, result)
    if refusal is not None:
        return refusal
    assert isinstance(result, Preview)
    parsed = result.parsed
    headers = [(k, str(v)) for k, v in parsed.items()]
    topics = await run_in_threadpool(_topic_names, ctx)
    return _editor_page(
        request,
        ctx,
        signed,
        "editor/preview.html",
        {
            "result": result,
            "req": req,
            "headers": headers,
            "html_src": "/editor/preview.html?" + urlencode(req.query()),
            "all_topics": topics,
        },
    )


def _topic_names(ctx: WebContext) -> list[tuple[str, str]]:
    with Session(ctx.engine) as session:
        return [(t.slug, t.name) for t in all_topics(session)]


#: The previewed email runs in a sandbox: no scripts, no forms, no access to the editor's pages.
PREVIEW_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:; "
    "frame-ancestors 'self'"
)


async def preview_html(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.editor.require(request)
    result = await _preview(ctx, PreviewRequest.from_params(request.query_params))
    refusal = _preview_or_message(request, ctx, result)
    if refusal is not None:
        return refusal
    assert isinstance(result, Preview)
    return HTMLResponse(
        result.rendered.html,
        headers={"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


# ------------------------------------------------------------------ test copy


def _audit(ctx: WebContext, signed: SignedIn, action: str, target: str, detail: str) -> None:
    with session_scope(ctx.engine) as session:
        audit.record(session, signed.email, action, target, ctx.clock(), detail)


def send_test_copy(ctx: WebContext, req: PreviewRequest, to: str) -> Sent:
    """Send the previewed issue to ``to`` through the outbound door; never a delivery."""
    found = build_preview(ctx, req)
    if found is None:
        raise LookupError("This issue would be empty right now; nothing to send.")
    return ctx.outbound.test_copy(found, to, ctx.clock())


async def test_send(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    form = await editor_form(request, signed)
    try:
        to = normalize_email(str(form.get("to") or ""))
    except MemberError as exc:
        return ctx.message(request, "Bad address", exc.message, 400)
    wait = ctx.test_copy_limiter.hit(f"editor:{signed.session_id}")
    if wait is not None:
        return ctx.too_many(
            request,
            "Too many test copies",
            "This session has sent its share of test copies for the hour. Try again later.",
            wait,
        )
    req = PreviewRequest.from_params(form)
    try:
        sent = await run_in_threadpool(send_test_copy, ctx, req, to)
    except LookupError as exc:
        return ctx.message(request, "Nothing sent", str(exc), 404)
    if not sent.ok:
        return ctx.message(
            request, "Test copy not sent", f"The mail server said: {sent.server_said}", 502
        )
    what = req.email or ", ".join(req.topics)
    await run_in_threadpool(_audit, ctx, signed, "test-copy", to, f"{sent.subject} ({what})")
    return ctx.message(
        request,
        "Test copy sent",
        f"“{sent.subject}” was sent to {to} ({sent.server_said}). "
        "It is not recorded as a delivery.",
        link=("/editor/preview?" + urlencode(req.query()), "Back"),
    )


ROUTES = [
    Route("/editor/login", login_form, methods=["GET"]),
    Route("/editor/login", login, methods=["POST"]),
    Route("/editor/login/link", link_request, methods=["POST"]),
    Route("/editor/login/link/{token}", link_page, methods=["GET"]),
    Route("/editor/login/link/{token}", link_sign_in, methods=["POST"]),
    Route("/editor/logout", logout, methods=["POST"]),
    Route("/editor/upcoming", upcoming_page, methods=["GET"]),
    Route("/editor/preview", preview_page, methods=["GET"]),
    Route("/editor/preview.html", preview_html, methods=["GET"]),
    Route("/editor/test-send", test_send, methods=["POST"]),
]
