"""Members sign in to the archive with a one-time link: ask for it, use it, sign out.

HTTP handlers over ``archive.signin``. Asking answers the same words whether or not the
address is a member's, and the mail goes out after the answer (a background task), so not
even the time taken tells. Asks are limited per address (a quiet refusal, the same words)
and per client (429). Asking needs no CSRF token: it only mails a link to the address given,
which anyone can ask for directly, and the limits bound it. Opening the link spends it and
sets the member's session cookie, in any client, with or without scripts (as members expect
of a sign-in link); a mail scanner that opens links first spends it too, and the refusal page
then offers a new one in one step.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.archive.signin import LINK_MINUTES, SignInRefused
from digest.members.rules import MemberError, normalize_email
from digest.web.archive import doors
from digest.web.context import WebContext, web_context
from digest.web.members import worded
from digest.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    MEMBER_COOKIE,
    client_address,
    client_key,
    cookie_binding,
    ensure_csrf_cookie,
    set_cookie,
)

log = logging.getLogger(__name__)

#: Where a member may be sent after signing in: pages of the archive, nothing else.
_NEXT_PREFIXES = ("/archive", "/articles/", "/topics/", "/resources", "/search")


def safe_next(value: str | None) -> str:
    """A local archive path to return to (never another site: no open redirect)."""
    if not value or len(value) > 500 or not value.startswith(_NEXT_PREFIXES):
        return "/archive"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or any(ord(c) < 32 for c in value):
        return "/archive"
    return value


def _form(
    ctx: WebContext,
    request: Request,
    *,
    next_path: str,
    email: str = "",
    title: str = "Sign in",
    text: str = "",
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    binding, fresh = ensure_csrf_cookie(request)
    response = ctx.page(
        request,
        "signin.html",
        {
            "title": title,
            "text": text,
            "email": email,
            "next_path": next_path,
            "errors": errors or [],
            "csrf_token": ctx.csrf.token(binding),
            "minutes": LINK_MINUTES,
        },
        status_code=status_code,
    )
    if fresh:
        set_cookie(response, request, CSRF_COOKIE, fresh)
    return response


async def signin_form(request: Request) -> Response:
    ctx = web_context(request)
    return _form(ctx, request, next_path=safe_next(request.query_params.get("next")))


async def signin_request(request: Request) -> Response:
    ctx = web_context(request)
    archive = doors(request)
    form = await request.form()
    next_path = safe_next(str(form.get("next") or ""))
    typed = str(form.get("email") or "")[:320]
    try:
        email = normalize_email(typed, "form")
    except MemberError as exc:
        return _form(
            ctx,
            request,
            next_path=next_path,
            email=typed,
            errors=worded([exc]),
            status_code=400,
        )
    wait = archive.signin_per_client.hit(client_key(client_address(request)))
    if wait is not None:
        return ctx.too_many(
            request,
            "Too many requests",
            "This network asked for many sign-in links. Try again later.",
            wait,
        )
    task = None
    if archive.signin_per_address.hit(email) is None:
        task = BackgroundTask(archive.signin.request, email, next_path)
    else:
        log.warning("sign-in: %s asked for too many links; none sent", email)
    response = ctx.message(
        request,
        "Check your inbox",
        f"If {email} belongs to a member, a link to sign in is on its way. It works once, "
        f"for {LINK_MINUTES} minutes. Not a member yet? Join the club for free.",
        link=("/subscribe", "Join the club"),
    )
    response.background = task
    return response


def _refused(ctx: WebContext, request: Request, reason: str) -> Response:
    texts = {
        "used": "This sign-in link has already been used: each link works once.",
        "expired": f"This sign-in link has expired: links work for {LINK_MINUTES} minutes.",
    }
    text = texts.get(reason, "This sign-in link is not valid: it may have been cut short.")
    return _form(
        ctx,
        request,
        next_path="/archive",
        title="This link does not work",
        text=text + " Ask for a new one below.",
        status_code=410 if reason in texts else 400,
    )


async def signin_link(request: Request) -> Response:
    """The link from the mail: spends it and signs the member in."""
    return await _sign_in(request)


async def signin_use(request: Request) -> Response:
    """The same link posted (the button of pages sent before links signed in on opening)."""
    ctx = web_context(request)
    form = await request.form()
    ctx.csrf.check(cookie_binding(request), str(form.get(CSRF_FIELD) or ""))
    return await _sign_in(request)


async def _sign_in(request: Request) -> Response:
    ctx = web_context(request)
    archive = doors(request)
    try:
        status = await run_in_threadpool(archive.signin.use, request.path_params["token"])
    except SignInRefused as exc:
        return _refused(ctx, request, exc.reason)
    response = RedirectResponse(safe_next(status.next_path), status_code=303)
    set_cookie(
        response,
        request,
        MEMBER_COOKIE,
        archive.sessions.new(status.member_id),
        max_age=archive.sessions.max_age,
    )
    log.info("member %s signed in to the archive", status.member_id)
    return response


async def signout(request: Request) -> Response:
    ctx = web_context(request)
    archive = doors(request)
    form = await request.form()
    found = archive.sessions.read(request)
    if found is not None:
        ctx.csrf.check(f"member:{found[1]}", str(form.get(CSRF_FIELD) or ""))
    response = ctx.message(
        request, "Signed out", "You are signed out.", link=("/archive", "The archive")
    )
    response.delete_cookie(MEMBER_COOKIE, path="/")
    return response


ROUTES = [
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", signin_request, methods=["POST"]),
    Route("/signin/{token}", signin_link, methods=["GET"]),
    Route("/signin/{token}", signin_use, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
]
