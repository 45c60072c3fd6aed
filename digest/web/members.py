"""Member pages: subscribe (double opt-in), confirm, preferences and unsubscribe.

HTTP handlers only: the rules and the steps live in ``digest.members`` (``Membership``); here
forms are read, CSRF is checked and outcomes become pages. A GET never changes anything (link
scanners open links); changes are POSTs carrying a CSRF token bound to the page's own link
token, except the RFC 8058 one-click unsubscribe, whose only credential is the unsubscribe
token itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest.archive.store import ResourceChoice, offered_resources
from digest.catalog import TopicChoice, offered_topics
from digest.content import MemberView
from digest.members import (
    SUPPRESSED_STATUSES,
    MemberError,
    MemberRecord,
    SuppressedMember,
    parse_profile,
)
from digest.members.lifecycle import ACTIONS
from digest.models import FREQUENCIES
from digest.topics import topic_slug
from digest.web.context import WebContext, web_context
from digest.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    client_address,
    client_key,
    cookie_binding,
    ensure_csrf_cookie,
    set_cookie,
)

ONE_CLICK = "One-Click"
_FIELDS = ("email", "name", "frequency", "timezone", "send_hour")


@cache
def timezone_names() -> tuple[str, ...]:
    """IANA zones worth offering: Area/Location names plus UTC, sorted."""
    names = {n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV"))}
    return ("UTC", *sorted(names))


def _topics(ctx: WebContext, own: Iterable[str] = ()) -> list[TopicChoice]:
    """What the forms offer (``catalog.offered_topics``); ``own``: the member's topics."""
    with Session(ctx.engine) as session:
        return offered_topics(session, ctx.settings.topics, own)


def _resources(ctx: WebContext, own: Iterable[int] = ()) -> list[ResourceChoice]:
    """The people and organisations the forms offer; ``own``: the member's."""
    with Session(ctx.engine) as session:
        return offered_resources(session, ctx.clock(), own)


def worded(errors: Iterable[MemberError]) -> list[str]:
    """Field errors as the forms show them."""
    out = []
    for error in errors:
        if error.code == "no_topics":
            out.append("Choose at least one topic or person to follow.")
        else:
            message = error.message.rstrip(".")  # a library's reason may end with its own
            out.append(f"{error.field.replace('_', ' ').capitalize()}: {message}.")
    return out


def read_profile(
    ctx: WebContext,
    form: FormData,
    topics: list[TopicChoice],
    email: str | None = None,
    resources: list[ResourceChoice] | None = None,
) -> tuple[MemberRecord | None, list[MemberError]]:
    """The subscribe or preferences form as a validated record (or its errors); ``email``
    is the link's member's address on the preferences page (the form has none)."""
    values = {key: str(form.get(key) or "") for key in _FIELDS}
    if email is not None:
        values["email"] = email
    ticked = [topic_slug(str(v)) for v in form.getlist("topics")]
    offered = {t.slug: t.name for t in topics}
    return parse_profile(
        values,
        ticked,
        offered,
        ctx.settings.max_topics_per_member,
        follows=[str(v) for v in form.getlist("follows")],
        offered_resources={r.slug: r.name for r in resources or ()},
    )


# ------------------------------------------------------------------ subscribe


def _subscribe_page(
    request: Request,
    ctx: WebContext,
    topics: list[TopicChoice],
    errors: list[str] | None = None,
    form: FormData | None = None,
    status_code: int = 200,
    resources: list[ResourceChoice] | None = None,
) -> Response:
    binding, new_nonce = ensure_csrf_cookie(request)
    # a form sent back with errors, or a link from the archive ("follow", "join") prefilling it
    given: Any = form if form is not None else request.query_params
    chosen = {topic_slug(str(v)) for v in given.getlist("topics")}
    chosen_follows = {str(v) for v in given.getlist("follows")}
    response = ctx.page(
        request,
        "subscribe.html",
        {
            "topics": topics,
            "chosen": chosen,
            "resources": resources or [],
            "chosen_follows": chosen_follows,
            "errors": errors or [],
            "form": {k: str(given.get(k) or "")[:320] for k in _FIELDS},
            "frequencies": FREQUENCIES,
            "timezones": timezone_names(),
            "csrf_token": ctx.csrf.token(binding),
        },
        status_code=status_code,
    )
    if new_nonce:
        set_cookie(response, request, CSRF_COOKIE, new_nonce)
    return response


async def subscribe_form(request: Request) -> Response:
    ctx = web_context(request)
    topics = await run_in_threadpool(_topics, ctx)
    resources = await run_in_threadpool(_resources, ctx)
    return _subscribe_page(request, ctx, topics, resources=resources)


async def subscribe(request: Request) -> Response:
    ctx = web_context(request)
    wait = ctx.subscribe_limiter.hit(client_key(client_address(request)))
    if wait is not None:
        return ctx.too_many(
            request,
            "Too many requests",
            "Too many subscription requests from your address. Please try again later.",
            wait,
        )
    form = await request.form()
    ctx.csrf.check(cookie_binding(request), str(form.get(CSRF_FIELD) or ""))
    topics = await run_in_threadpool(_topics, ctx)
    resources = await run_in_threadpool(_resources, ctx)
    record, errors = read_profile(ctx, form, topics, resources=resources)
    if record is None:
        return _subscribe_page(
            request, ctx, topics, worded(errors), form, status_code=400, resources=resources
        )
    requested = await run_in_threadpool(ctx.membership.request, record)
    if requested.kind == "limited":  # the same answer whatever the address's state
        hours = max(1, round((requested.wait or 0) / 3600))
        return ctx.message(
            request,
            "We already sent you a link",
            f"We already sent you a link at {record.email} a short while ago, so we have not sent "
            "another: open the link in that message (look in your spam folder too). If you "
            f"cannot find it, you can ask for a new one in about {hours} "
            f"hour{'s' if hours != 1 else ''}.",
        )
    if not requested.sent:  # the same answer whatever the address's state: it reveals nothing
        return ctx.message(
            request,
            "Not sent yet",
            "We could not send the message just now. Please try again in a few minutes.",
            status_code=503,
            headers={"Retry-After": "300"},
        )
    return ctx.message(
        request,
        "Check your inbox",
        f"We have sent a message to {record.email}. Open the link in it to finish; if you do not "
        "see it in a few minutes, look in your spam folder.",
    )


# ------------------------------------------------------------------ confirm


def _manage_link(ctx: WebContext, view: MemberView) -> tuple[str, str]:
    return (
        ctx.membership.preferences_url(view.id, view.email, ctx.clock()),
        "Manage your subscription",
    )


async def confirm_page(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    sealed = request.query_params.get("p")
    state = await run_in_threadpool(ctx.membership.confirmation, token, sealed)
    view = state.member
    if state.already:
        return ctx.message(
            request,
            "Already subscribed",
            f"{view.email} is already subscribed.",
            link=_manage_link(ctx, view),
        )
    return ctx.page(
        request,
        "confirm.html",
        {
            "member": view,
            "profile": state.asked,
            "sealed": sealed or "",
            "token": token,
            "csrf_token": ctx.csrf.token(f"confirm:{token}"),
        },
    )


async def confirm(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    form = await request.form()
    ctx.csrf.check(f"confirm:{token}", str(form.get(CSRF_FIELD) or ""))
    sealed = str(form.get("p") or "") or None
    view = await run_in_threadpool(ctx.membership.confirm, token, sealed)
    return ctx.message(
        request,
        "You are subscribed",
        f"Thank you: {view.email} will get {ctx.settings.site_name} ({view.frequency}, on "
        f"{', '.join(view.topics)}).",
        link=_manage_link(ctx, view),
    )


# ------------------------------------------------------------------ preferences


def _prefs_state(
    ctx: WebContext, token: str
) -> tuple[MemberView, list[TopicChoice], list[ResourceChoice]]:
    view = ctx.membership.preferences(token)
    return view, _topics(ctx, view.topics), _resources(ctx, view.resource_ids)


def _prefs_page(
    request: Request,
    ctx: WebContext,
    token: str,
    view: MemberView,
    topics: list[TopicChoice],
    errors: list[str] | None = None,
    notice: str = "",
    status_code: int = 200,
    resources: list[ResourceChoice] | None = None,
) -> Response:
    return ctx.page(
        request,
        "preferences.html",
        {
            "member": view,
            "topics": topics,
            "chosen": view.topic_slugs,
            "resources": resources or [],
            "chosen_follows": {r.slug for r in resources or () if r.id in view.resource_ids},
            "errors": errors or [],
            "notice": notice,
            "frequencies": FREQUENCIES,
            "timezones": timezone_names(),
            "token": token,
            "suppressed": view.status in SUPPRESSED_STATUSES,
            "csrf_token": ctx.csrf.token(f"preferences:{token}"),
        },
        status_code=status_code,
    )


NOTICES = {
    "saved": "Your changes are saved; they apply from your next digest.",
    "paused": "Your digest is paused. Resume it here whenever you like.",
    "resumed": "Your digest is back on.",
    "unsubscribed": "You are unsubscribed and will get no more digests.",
}


async def preferences_page(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    view, topics, resources = await run_in_threadpool(_prefs_state, ctx, token)
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    return _prefs_page(request, ctx, token, view, topics, notice=notice, resources=resources)


async def preferences(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    form = await request.form()
    ctx.csrf.check(f"preferences:{token}", str(form.get(CSRF_FIELD) or ""))
    action = str(form.get("action") or "save")
    if action not in ACTIONS:
        return ctx.message(request, "Unknown action", "Use the buttons on the page.", 400)
    record = None
    if action == "save":
        view, topics, resources = await run_in_threadpool(_prefs_state, ctx, token)
        record, errors = read_profile(ctx, form, topics, view.email, resources)
        if record is None:
            return _prefs_page(
                request,
                ctx,
                token,
                view,
                topics,
                worded(errors),
                status_code=400,
                resources=resources,
            )
    try:
        done = await run_in_threadpool(ctx.membership.change, token, action, record)
    except SuppressedMember:
        return ctx.message(
            request,
            "You are unsubscribed",
            "This address is unsubscribed; to receive the digest again, subscribe anew.",
            status_code=409,
            link=("/subscribe", "Subscribe"),
        )
    return RedirectResponse(f"/preferences/{token}?done={done}", status_code=303)


# ------------------------------------------------------------------ unsubscribe


async def unsubscribe_page(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    view = await run_in_threadpool(ctx.membership.unsubscribing, token)
    return ctx.page(
        request,
        "unsubscribe.html",
        {"member": view, "done": view.status in SUPPRESSED_STATUSES, "token": token},
    )


async def unsubscribe(request: Request) -> Response:
    """RFC 8058: ``List-Unsubscribe=One-Click`` in the body; no cookie, no CSRF token."""
    ctx = web_context(request)
    token = request.path_params["token"]
    form = await request.form()
    if form.get("List-Unsubscribe") != ONE_CLICK:
        return ctx.message(
            request,
            "Nothing changed",
            "This request did not ask to unsubscribe. Use the button on the page.",
            status_code=400,
        )
    view = await run_in_threadpool(ctx.membership.unsubscribe, token, "one-click unsubscribe")
    return ctx.message(
        request,
        "You are unsubscribed",
        f"{view.email} will get no more digests from {ctx.settings.site_name}.",
        link=("/subscribe", "Subscribe again"),
    )


ROUTES = [
    Route("/subscribe", subscribe_form, methods=["GET"]),
    Route("/subscribe", subscribe, methods=["POST"]),
    Route("/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/confirm/{token}", confirm, methods=["POST"]),
    Route("/preferences/{token}", preferences_page, methods=["GET"]),
    Route("/preferences/{token}", preferences, methods=["POST"]),
    Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
]
