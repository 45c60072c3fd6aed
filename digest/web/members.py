"""Member pages: subscribe (double opt-in), confirm, preferences and unsubscribe.

Members never log in: every page is opened by a signed link bound to the member and the
purpose. A GET never changes anything (link scanners open links); changes are POSTs carrying
a CSRF token bound to the page's own link token, except the RFC 8058 one-click unsubscribe,
whose only credential is the unsubscribe token itself.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from itsdangerous import BadSignature, URLSafeSerializer
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import catalog, ledger
from digest.compose import UnmailableAddress, compose_message
from digest.content import MemberView, Rendered
from digest.db import session_scope
from digest.members import (
    MemberError,
    add_member,
    clean_name,
    get_member,
    normalize_email,
    parse_frequency,
    parse_send_hour,
    parse_timezone,
    set_status,
)
from digest.models import FREQUENCIES, SUPPRESSED_STATUSES, Subscriber, Topic
from digest.render import clean_subject, mjml_to_html
from digest.tokens import InvalidToken, TokenData, member_links
from digest.topics import topic_slug
from digest.web.context import WebContext, web_context
from digest.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    client_address,
    cookie_binding,
    ensure_csrf_cookie,
    set_cookie,
)

log = logging.getLogger(__name__)

ONE_CLICK = "One-Click"


# ------------------------------------------------------------------ shared pieces


@cache
def timezone_names() -> tuple[str, ...]:
    """IANA zones worth offering: Area/Location names plus UTC, sorted."""
    names = {n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV"))}
    return ("UTC", *sorted(names))


def all_topics(session: Session) -> list[Topic]:
    topics = list(session.exec(select(Topic)).all())
    topics.sort(key=lambda t: t.name.casefold())
    return topics


@dataclass(frozen=True)
class Profile:
    """What a visitor asked for: validated, topics as stored display names."""

    name: str
    topics: tuple[str, ...]
    frequency: str
    timezone: str
    send_hour: int

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.name,
            "t": list(self.topics),
            "f": self.frequency,
            "z": self.timezone,
            "h": self.send_hour,
        }

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        if not isinstance(data, dict):
            raise ValueError("malformed profile")
        return cls(
            name=clean_name(str(data.get("n", ""))),
            topics=tuple(str(t) for t in data.get("t", [])),
            frequency=parse_frequency(str(data.get("f", ""))),
            timezone=parse_timezone(str(data.get("z", ""))),
            send_hour=parse_send_hour(int(data.get("h", 7))),
        )


def parse_profile(form: FormData, topics: list[Topic]) -> tuple[Profile | None, list[str]]:
    """Validate a subscribe/preferences form; topics must be ones that exist."""
    errors: list[str] = []
    by_slug = {t.slug: t.name for t in topics}
    chosen = [
        by_slug[s]
        for s in dict.fromkeys(topic_slug(str(v)) for v in form.getlist("topics"))
        if s in by_slug
    ]
    if not chosen:
        errors.append("Choose at least one topic.")
    values: dict[str, Any] = {}
    for key, parse in (
        ("name", clean_name),
        ("frequency", parse_frequency),
        ("timezone", parse_timezone),
        ("send_hour", parse_send_hour),
    ):
        try:
            values[key] = parse(str(form.get(key) or ""))
        except MemberError as exc:
            errors.append(f"{key.replace('_', ' ').capitalize()}: {exc.message}.")
    if errors:
        return None, errors
    return Profile(topics=tuple(chosen), **values), []


def member_by_token(
    session: Session, ctx: WebContext, token: str, purpose: str, max_age: timedelta | None
) -> tuple[Subscriber, TokenData]:
    """The member a link is for; InvalidToken (a 400 page) if forged, expired or not theirs."""
    now = ctx.clock()
    data = ctx.signer.decode(token, purpose, now, max_age)
    member = session.get(Subscriber, data.member_id)
    if member is None:
        raise InvalidToken("no such member")
    ctx.signer.verify_for(token, purpose, data.member_id, member.email, now, max_age)
    return member, data


def member_view(session: Session, member: Subscriber) -> MemberView:
    return catalog.member_views(session, [member])[0]


def _days(days: int) -> timedelta:
    return timedelta(days=max(1, days))


def _profile_serializer(ctx: WebContext) -> URLSafeSerializer:
    return URLSafeSerializer(ctx.settings.secret_key, salt="digest.confirm-profile")


def _token_tag(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def seal_profile(ctx: WebContext, token: str, profile: Profile) -> str:
    """The requested profile, signed and bound to one confirm token (applied on confirm)."""
    return _profile_serializer(ctx).dumps({"k": _token_tag(token), **profile.as_json()})


def open_profile(ctx: WebContext, token: str, sealed: str | None) -> Profile | None:
    if not sealed:
        return None
    try:
        data = _profile_serializer(ctx).loads(sealed)
        if not isinstance(data, dict) or data.get("k") != _token_tag(token):
            raise InvalidToken("profile belongs to another link")
        return Profile.from_json(data)
    except (BadSignature, ValueError, TypeError):
        raise InvalidToken("altered confirmation link") from None


def send_mail(
    ctx: WebContext, member: MemberView, rendered: Rendered, kind: str, now: datetime
) -> bool:
    """One transactional mail (not a delivery: never in the ledger); True if accepted."""
    settings = ctx.settings
    links = member_links(
        ctx.signer, settings.base_url, member, now, settings.effective_unsubscribe_mailto
    )
    message_id = ledger.new_message_id(kind, settings.from_domain)
    try:
        data = compose_message(
            rendered,
            from_address=settings.from_address,
            to_email=member.email,
            to_name=member.name,
            message_id=message_id,
            date=now,
            list_id=settings.effective_list_id,
            unsubscribe_url=links.unsubscribe_url,
            unsubscribe_mailto_url=links.unsubscribe_mailto,
            reply_to=settings.reply_to,
        )
    except UnmailableAddress as exc:  # a row stored before addresses were checked for this
        log.warning("%s mail to member %s not composed: %s", kind, member.id, exc)
        return False
    transport = ctx.transport_factory()
    try:
        result = transport.send(parseaddr(settings.from_address)[1], member.email, data, message_id)
    finally:
        transport.close()
    if not result.ok:
        log.warning(
            "%s mail to member %s not sent: %s %s", kind, member.id, result.code, result.reply
        )
    return result.ok


def preferences_url(ctx: WebContext, member_id: int, email: str, now: datetime) -> str:
    token = ctx.signer.make(member_id, email, "preferences", now)
    return f"{ctx.settings.base_url.rstrip('/')}/preferences/{token}"


def render_manage_mail(ctx: WebContext, member: MemberView, url: str) -> Rendered:
    """The "you are already subscribed" mail with a preferences link (MJML like the digest)."""
    context = {"site_name": ctx.settings.site_name, "preferences_url": url, "member": member}
    get = ctx.mails.get_template
    return Rendered(
        subject=clean_subject(get("web/mail/manage_subject.txt.j2").render(context)),
        html=mjml_to_html(get("web/mail/manage.mjml.j2").render(context)),
        text=get("web/mail/manage.txt.j2").render(context),
    )


# ------------------------------------------------------------------ subscribe


def _subscribe_page(
    request: Request,
    ctx: WebContext,
    topics: list[Topic],
    errors: list[str] | None = None,
    form: FormData | None = None,
    status_code: int = 200,
) -> Response:
    binding, new_nonce = ensure_csrf_cookie(request)
    chosen = {topic_slug(str(v)) for v in form.getlist("topics")} if form else set()
    response = ctx.page(
        request,
        "subscribe.html",
        {
            "topics": topics,
            "chosen": chosen,
            "errors": errors or [],
            "form": {
                k: str(form.get(k) or "")
                for k in ("email", "name", "frequency", "timezone", "send_hour")
            }
            if form
            else {},
            "frequencies": FREQUENCIES,
            "timezones": timezone_names(),
            "csrf_token": ctx.csrf.token(binding),
        },
        status_code=status_code,
    )
    if new_nonce:
        set_cookie(response, request, CSRF_COOKIE, new_nonce)
    return response


def _topics(ctx: WebContext) -> list[Topic]:
    with Session(ctx.engine) as session:
        topics = all_topics(session)
        session.expunge_all()
    return topics


async def subscribe_form(request: Request) -> Response:
    ctx = web_context(request)
    topics = await run_in_threadpool(_topics, ctx)
    return _subscribe_page(request, ctx, topics)


def request_subscription(ctx: WebContext, email: str, profile: Profile) -> tuple[str, bool]:
    """Create or find the member and mail them; returns what was sent and whether the server
    took it (False when it refused, or when the address has had its share of mails today).

    New and pending members get a confirmation link; unsubscribed or bounced ones too (only
    their own click reactivates them); active or paused members get a preferences link and
    nothing about them changes, so a stranger cannot alter their subscription.
    """
    now = ctx.clock()
    if ctx.address_limiter.hit(email) is not None:
        log.warning("subscribe: %s has had its share of mails today; none sent", email)
        return "limited", True  # answered like a sent mail: nothing to learn about the address
    with session_scope(ctx.engine) as session:
        member = get_member(session, email)
        if member is None:
            add_member(
                session,
                email,
                now,
                name=profile.name,
                topics=profile.topics,
                frequency=profile.frequency,
                timezone=profile.timezone,
                send_hour=profile.send_hour,
                status="pending",
            )
            member = get_member(session, email)
            assert member is not None
        view = member_view(session, member)
    if view.status in ("active", "paused"):
        rendered = render_manage_mail(ctx, view, preferences_url(ctx, view.id, view.email, now))
        return "preferences", send_mail(ctx, view, rendered, "manage", now)
    token = ctx.signer.make(view.id, view.email, "confirm", now)
    url = (
        f"{ctx.settings.base_url.rstrip('/')}/confirm/{token}?p={seal_profile(ctx, token, profile)}"
    )
    asked = MemberView(
        id=view.id,
        email=view.email,
        name=profile.name or view.name,
        status=view.status,
        frequency=profile.frequency,
        timezone=profile.timezone,
        send_hour=profile.send_hour,
        topics=profile.topics,
    )
    rendered = ctx.editions.renderer.render_confirmation(
        site_name=ctx.settings.site_name, confirm_url=url, member=asked
    )
    return "confirm", send_mail(ctx, view, rendered, "confirm", now)


async def subscribe(request: Request) -> Response:
    ctx = web_context(request)
    wait = ctx.subscribe_limiter.hit(client_address(request))
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
    errors: list[str] = []
    email = ""
    try:
        email = normalize_email(str(form.get("email") or ""))
    except MemberError as exc:
        errors.append(f"Email: {exc.message}.")
    profile, more = parse_profile(form, topics)
    errors += more
    if errors or profile is None:
        return _subscribe_page(request, ctx, topics, errors, form, status_code=400)
    _, sent = await run_in_threadpool(request_subscription, ctx, email, profile)
    if not sent:  # the same answer whatever the address's state: it reveals nothing
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
        f"We have sent a message to {email}. Open the link in it to finish; if you do not "
        "see it in a few minutes, look in your spam folder.",
    )


# ------------------------------------------------------------------ confirm


def _confirm_state(
    ctx: WebContext, token: str, sealed: str | None
) -> tuple[MemberView, Profile, TokenData, Subscriber]:
    max_age = _days(ctx.settings.confirm_link_days)
    with Session(ctx.engine) as session:
        member, data = member_by_token(session, ctx, token, "confirm", max_age)
        view = member_view(session, member)
        session.expunge(member)
    profile = open_profile(ctx, token, sealed) or Profile(
        view.name, view.topics, view.frequency, view.timezone, view.send_hour
    )
    return view, profile, data, member


def _stale_for_suppressed(member: Subscriber, data: TokenData) -> bool:
    """A confirm link older than the unsubscribe/bounce must not undo it."""
    return data.issued_at < member.updated_at.replace(microsecond=0)


async def confirm_page(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    sealed = request.query_params.get("p")
    view, profile, data, member = await run_in_threadpool(_confirm_state, ctx, token, sealed)
    if view.status in ("active", "paused"):
        url = preferences_url(ctx, view.id, view.email, ctx.clock())
        return ctx.message(
            request,
            "Already subscribed",
            f"{view.email} is already subscribed.",
            link=(url, "Manage your subscription"),
        )
    if view.status in SUPPRESSED_STATUSES and _stale_for_suppressed(member, data):
        raise InvalidToken("stale")
    return ctx.page(
        request,
        "confirm.html",
        {
            "member": view,
            "profile": profile,
            "sealed": sealed or "",
            "token": token,
            "csrf_token": ctx.csrf.token(f"confirm:{token}"),
        },
    )


def confirm_subscription(ctx: WebContext, token: str, sealed: str | None) -> MemberView:
    """Activate the member with the profile they asked for; repeated, it changes nothing."""
    now = ctx.clock()
    max_age = _days(ctx.settings.confirm_link_days)
    profile = open_profile(ctx, token, sealed)
    with session_scope(ctx.engine) as session:
        member, data = member_by_token(session, ctx, token, "confirm", max_age)
        if member.status in ("active", "paused"):
            return member_view(session, member)
        if member.status in SUPPRESSED_STATUSES and _stale_for_suppressed(member, data):
            raise InvalidToken("stale")
        email = member.email
        if profile is not None:
            add_member(
                session,
                email,
                now,
                name=profile.name or None,
                topics=profile.topics,
                frequency=profile.frequency,
                timezone=profile.timezone,
                send_hour=profile.send_hour,
                reactivate=True,
            )
        set_status(session, email, "active", "confirmed by the member (double opt-in)", now)
        member = get_member(session, email)
        assert member is not None
        return member_view(session, member)


async def confirm(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    form = await request.form()
    ctx.csrf.check(f"confirm:{token}", str(form.get(CSRF_FIELD) or ""))
    sealed = str(form.get("p") or "") or None
    view = await run_in_threadpool(confirm_subscription, ctx, token, sealed)
    url = preferences_url(ctx, view.id, view.email, ctx.clock())
    return ctx.message(
        request,
        "You are subscribed",
        f"Thank you: {view.email} will get {ctx.settings.site_name} ({view.frequency}, on "
        f"{', '.join(view.topics)}).",
        link=(url, "Manage your subscription"),
    )


# ------------------------------------------------------------------ preferences


def _prefs_state(ctx: WebContext, token: str) -> tuple[MemberView, list[Topic]]:
    max_age = _days(ctx.settings.preferences_link_days)
    with Session(ctx.engine) as session:
        member, _ = member_by_token(session, ctx, token, "preferences", max_age)
        view = member_view(session, member)
        topics = all_topics(session)
        session.expunge_all()
    return view, topics


def _prefs_page(
    request: Request,
    ctx: WebContext,
    token: str,
    view: MemberView,
    topics: list[Topic],
    errors: list[str] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> Response:
    return ctx.page(
        request,
        "preferences.html",
        {
            "member": view,
            "topics": topics,
            "chosen": view.topic_slugs,
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
    view, topics = await run_in_threadpool(_prefs_state, ctx, token)
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    return _prefs_page(request, ctx, token, view, topics, notice=notice)


def apply_preferences(ctx: WebContext, token: str, action: str, profile: Profile | None) -> str:
    """Save, pause, resume or unsubscribe for the link's member; returns the notice key."""
    now = ctx.clock()
    max_age = _days(ctx.settings.preferences_link_days)
    with session_scope(ctx.engine) as session:
        member, _ = member_by_token(session, ctx, token, "preferences", max_age)
        email = member.email
        if action == "unsubscribe":
            if member.status not in SUPPRESSED_STATUSES:
                set_status(session, email, "unsubscribed", "unsubscribed on preferences page", now)
            return "unsubscribed"
        if member.status in SUPPRESSED_STATUSES:
            raise PermissionError(member.status)
        if action == "pause":
            if member.status != "paused":
                set_status(session, email, "paused", "paused by the member", now)
            return "paused"
        if action == "resume":
            if member.status != "active":
                set_status(session, email, "active", "resumed by the member", now)
            return "resumed"
        assert profile is not None
        add_member(
            session,
            email,
            now,
            topics=profile.topics,
            frequency=profile.frequency,
            timezone=profile.timezone,
            send_hour=profile.send_hour,
        )
        return "saved"


async def preferences(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    form = await request.form()
    ctx.csrf.check(f"preferences:{token}", str(form.get(CSRF_FIELD) or ""))
    action = str(form.get("action") or "save")
    if action not in ("save", "pause", "resume", "unsubscribe"):
        return ctx.message(request, "Unknown action", "Use the buttons on the page.", 400)
    profile = None
    if action == "save":
        view, topics = await run_in_threadpool(_prefs_state, ctx, token)
        profile, errors = parse_profile(form, topics)
        if profile is None:
            return _prefs_page(request, ctx, token, view, topics, errors, status_code=400)
    try:
        done = await run_in_threadpool(apply_preferences, ctx, token, action, profile)
    except PermissionError:
        return ctx.message(
            request,
            "You are unsubscribed",
            "This address is unsubscribed; to receive the digest again, subscribe anew.",
            status_code=409,
            link=("/subscribe", "Subscribe"),
        )
    return RedirectResponse(f"/preferences/{token}?done={done}", status_code=303)


# ------------------------------------------------------------------ unsubscribe


def _unsub_state(ctx: WebContext, token: str) -> MemberView:
    with Session(ctx.engine) as session:
        member, _ = member_by_token(session, ctx, token, "unsubscribe", None)
        return member_view(session, member)


def unsubscribe_member(ctx: WebContext, token: str, how: str) -> MemberView:
    """Unsubscribe the link's member; idempotent, and a bounce stays a bounce."""
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        member, _ = member_by_token(session, ctx, token, "unsubscribe", None)
        if member.status not in SUPPRESSED_STATUSES:
            set_status(session, member.email, "unsubscribed", how, now)
        return member_view(session, member)


async def unsubscribe_page(request: Request) -> Response:
    ctx = web_context(request)
    token = request.path_params["token"]
    view = await run_in_threadpool(_unsub_state, ctx, token)
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
    view = await run_in_threadpool(unsubscribe_member, ctx, token, "one-click unsubscribe")
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
