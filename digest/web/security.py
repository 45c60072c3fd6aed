"""CSRF tokens, rate limits, sign-in throttles and editors' sessions.

CSRF tokens are HMACs of a *binding*: the link token of a member page (so a form only works
for the page it came from), or a random nonce in a cookie (double submit) on the subscribe
and login pages, or the editor's server-side session. Editors' sessions are rows in the
store (``digest.editors.sessions``), so any number of web processes share them and a
logout ends one everywhere; the rate limiters and throttles count in memory, per process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from digest import editors
from digest.db import session_scope
from digest.editors import SignedIn, audit
from digest.models import Editor
from digest.settings import Settings
from digest.tokens import InvalidToken, TokenSigner

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "digest_csrf"
EDITOR_COOKIE = "digest_editor"


class CSRFError(Exception):
    """The form's CSRF token is missing or does not match its page: a 403, never a change."""


class EditorDisabled(Exception):
    """No editor account exists and no bootstrap password is set: nothing editorial is served."""


class EditorLoginRequired(Exception):
    """The request has no valid editor session."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class CSRF:
    """Makes and checks form tokens bound to a page token, a cookie nonce or a session."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"digest.csrf\0" + secret_key.encode("utf-8")).digest()

    def token(self, binding: str) -> str:
        return _b64(hmac.new(self._key, binding.encode("utf-8"), hashlib.sha256).digest())

    def check(self, binding: str | None, submitted: str | None) -> None:
        if not binding or not submitted:
            raise CSRFError("missing CSRF token")
        if not hmac.compare_digest(self.token(binding), submitted):
            raise CSRFError("CSRF token does not match this page")


def cookie_binding(request: Request) -> str | None:
    nonce = request.cookies.get(CSRF_COOKIE)
    return f"cookie:{nonce}" if nonce else None


def ensure_csrf_cookie(request: Request) -> tuple[str, str | None]:
    """The cookie nonce's binding, and a new nonce to set when the visitor has none yet."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce:
        return f"cookie:{nonce}", None
    nonce = secrets.token_urlsafe(24)
    return f"cookie:{nonce}", nonce


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    path: str = "/",
    samesite: str = "lax",
    max_age: int | None = None,
) -> None:
    """HttpOnly always; Secure when the site is https (``base_url``) or the request came over
    https: behind a TLS proxy that does not say so (X-Forwarded-Proto), the first still holds.
    """
    base_url = request.app.state.web.settings.base_url
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=request.url.scheme == "https" or base_url.startswith("https://"),
        samesite=samesite,  # type: ignore[arg-type]
    )


def client_address(request: Request) -> str:
    """The caller's address as uvicorn saw it (``--proxy-headers`` resolves trusted proxies)."""
    return request.client.host if request.client else "unknown"


def client_key(address: str) -> str:
    """Whom a per-client limit counts: an IPv4 address, or an IPv6 address's /64 (one host
    or home network holds a whole /64 and could take a new address for every request)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds per key (sliding window, in memory).

    Memory is bounded: at most ``max_keys`` addresses are remembered, the least recently
    seen forgotten first. ``limit <= 0`` means unlimited.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record a hit; None if allowed, else the seconds until the next one would be."""
        if self.limit <= 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            self._hits[key] = hits
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            if len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window - now)
            hits.append(now)
            return None


class LoginThrottle:
    """Failed sign-ins per key: ``limit`` failures within ``window`` seconds lock the key for
    ``lock`` seconds (in memory, per process; the clock is passed in).

    Keyed by account, a burst of wrong passwords locks that account's sign-in, whoever
    sends them, and nobody else's; keyed by client network, with a looser limit, one
    network cannot try account after account.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        lock: float,
        clock: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        self.limit, self.window, self.lock, self.clock = limit, window, lock, clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        self._mutex = threading.Lock()

    def locked_for(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        now = self.clock()
        with self._mutex:
            until = self._locked.get(key)
            if until is None:
                return None
            if until <= now:
                del self._locked[key]
                return None
            return max(1.0, until - now)

    def fail(self, key: str) -> float | None:
        """Count a failure; the lock's length if this one locked the key, else None."""
        now = self.clock()
        with self._mutex:
            hits = self._failures.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            hits.append(now)
            self._failures[key] = hits
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
            if len(hits) >= self.limit:
                self._locked[key] = now + self.lock
                hits.clear()
                if len(self._locked) > self.max_keys:
                    for stale in [k for k, t in self._locked.items() if t <= now]:
                        del self._locked[stale]
                return self.lock
            return None

    def succeed(self, key: str) -> None:
        with self._mutex:
            self._failures.pop(key, None)


def client_network(address: str) -> str:
    """The client's network for the looser limit: its /24 (IPv4) or /56 (IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    prefix = 24 if ip.version == 4 else 56
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


#: One-time sign-in links: how long one works, and how many an account may ask for an hour.
LINK_LIFETIME = timedelta(minutes=15)
LINKS_PER_HOUR = 5

#: Failed sign-ins: ten a minute lock an account; sixty in ten minutes block a network.
ACCOUNT_FAILURES, ACCOUNT_WINDOW = 10, 60.0
NETWORK_FAILURES, NETWORK_WINDOW = 60, 600.0


def account_key(email: str) -> str:
    """The account a typed address signs in to, as the throttles count it: the address as
    stored (``editors.clean_email``), so every spelling that reaches one account (a
    trailing dot, a capital, a fullwidth letter) spends that account's tries."""
    try:
        return editors.accounts.clean_email(email)
    except editors.EditorError:
        return " ".join(email.split()).lower()


@dataclass(frozen=True)
class SignInResult:
    """What a sign-in attempt came to: a cookie value, or why not (and for how long)."""

    token: str = ""
    editor: SignedIn | None = None
    wait: float | None = None  # locked: seconds until the next try
    bootstrapped: bool = False


class EditorAuth:
    """Editors' sign-in and their server-side sessions.

    Each editor has an account (``digest editors add``) and signs in with its password or
    a one-time link mailed to its address. ``DIGEST_EDITOR_PASSWORD`` only
    bootstraps: while no account exists, signing in with any address and that password
    makes that address the first account (with a warning in the log and on the page).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Callable[[], datetime],
        signer: TokenSigner | None = None,
    ) -> None:
        self.engine, self.clock = engine, clock
        self.signer = signer or TokenSigner(settings.secret_key)
        self._bootstrap = settings.editor_password
        self.hours = max(1, settings.editor_session_hours)
        self.max_age = self.hours * 3600

        def seconds() -> float:
            return clock().timestamp()

        lock = max(1, settings.editor_lockout_minutes) * 60.0
        self.accounts = LoginThrottle(ACCOUNT_FAILURES, ACCOUNT_WINDOW, lock, seconds)
        self.networks = LoginThrottle(NETWORK_FAILURES, NETWORK_WINDOW, NETWORK_WINDOW, seconds)
        # sign-in links: a few an hour per account and per network, so the form mails nobody
        self.link_requests = RateLimiter(LINKS_PER_HOUR, 3600, seconds)
        self.link_networks = RateLimiter(LINKS_PER_HOUR * 6, 3600, seconds)

    def _accounts(self) -> int:
        with Session(self.engine) as session:
            return editors.count_editors(session)

    def bootstrapping(self) -> bool:
        """No account yet, and DIGEST_EDITOR_PASSWORD set: it signs in the first editor."""
        return bool(self._bootstrap) and self._accounts() == 0

    def enabled(self) -> bool:
        return bool(self._bootstrap) or self._accounts() > 0

    def sign_in(self, email: str, password: str, client: str) -> SignInResult:
        """Check a password; a session on success. Locked accounts and networks are refused
        before the password is looked at, so a lock holds even for the right password."""
        account = account_key(email)
        network = client_network(client)
        for throttle, key in ((self.accounts, account), (self.networks, network)):
            wait = throttle.locked_for(key)
            if wait is not None:
                return SignInResult(wait=wait)
        now = self.clock()
        with session_scope(self.engine) as session:
            editor = editors.authenticate(session, email, password, now)
            bootstrapped = False
            if editor is None and self._bootstrap and editors.count_editors(session) == 0:
                editor = self._bootstrap_account(session, email, password, now)
                bootstrapped = editor is not None
            if editor is None:
                self.networks.fail(network)
                wait = self.accounts.fail(account)
                if wait is not None:
                    log.warning("editor sign-in for %s locked after repeated failures", account)
                return SignInResult(wait=wait)
            token = editors.start_session(session, editor, now, self.hours, client)
            audit.record(session, editor.email, "sign-in", editor.email, now, client)
            signed = editors.lookup(session, token, now)
        self.accounts.succeed(account)
        return SignInResult(token=token, editor=signed, bootstrapped=bootstrapped)

    def _bootstrap_account(
        self, session: Session, email: str, password: str, now: datetime
    ) -> Editor | None:
        want = hashlib.sha256(self._bootstrap.encode("utf-8")).digest()
        got = hashlib.sha256(password.encode("utf-8")).digest()
        if not hmac.compare_digest(want, got):
            return None
        try:
            view = editors.add_editor(session, email, "", password, now, checked=False)
        except editors.EditorError:
            return None
        log.warning(
            "DIGEST_EDITOR_PASSWORD signed in %s and made it the first editor account; "
            "it signs nobody in from now on: add editors with `digest editors add` and "
            "remove DIGEST_EDITOR_PASSWORD from the environment",
            view.email,
        )
        audit.record(session, view.email, "editor-add", view.email, now, "bootstrap password")
        return session.get(Editor, view.id)

    def request_link(self, email: str, client: str, send: Callable[[Editor, str], object]) -> bool:
        """Mail a one-time sign-in link to ``email`` if it is an editor's (``send(editor,
        token)``); False when this account or network asked too often. The caller answers
        the same either way, so nobody learns which addresses are editors."""
        account = account_key(email)
        if self.link_requests.hit(account) is not None:
            return False
        if self.link_networks.hit(client_network(client)) is not None:
            return False
        now = self.clock()
        with Session(self.engine) as session:
            editor = editors.get_editor(session, email)
        if editor is None or editor.id is None:
            return True
        send(editor, self.signer.make_editor_link(editor.id, editor.login_nonce, now))
        return True

    def sign_in_with_link(self, token: str, client: str) -> SignInResult:
        """Spend a one-time link: a session if it is genuine, recent and not used yet."""
        now = self.clock()
        try:
            editor_id, nonce = self.signer.verify_editor_link(token, now, LINK_LIFETIME)
        except InvalidToken:
            return SignInResult()
        with session_scope(self.engine) as session:
            editor = session.get(Editor, editor_id)
            if editor is None or not hmac.compare_digest(editor.login_nonce, nonce):
                return SignInResult()
            editors.accounts.spend_login_nonce(session, editor)
            editor.last_login_at = now
            token_out = editors.start_session(session, editor, now, self.hours, client)
            audit.record(session, editor.email, "sign-in", editor.email, now, f"link; {client}")
            signed = editors.lookup(session, token_out, now)
        return SignInResult(token=token_out, editor=signed)

    def current(self, request: Request) -> SignedIn | None:
        token = request.cookies.get(EDITOR_COOKIE)
        if not token:
            return None
        with session_scope(self.engine) as session:
            return editors.lookup(session, token, self.clock())

    async def require(self, request: Request) -> SignedIn:
        """The signed-in editor; raises when editing is disabled or nobody is signed in."""
        signed = await run_in_threadpool(self.current, request)
        if signed is not None:
            return signed
        if not await run_in_threadpool(self.enabled):
            raise EditorDisabled()
        raise EditorLoginRequired()

    def sign_out(self, request: Request) -> None:
        with session_scope(self.engine) as session:
            signed = editors.lookup(session, request.cookies.get(EDITOR_COOKIE), self.clock())
            if editors.end_session(session, request.cookies.get(EDITOR_COOKIE)) and signed:
                audit.record(session, signed.email, "sign-out", signed.email, self.clock())


def editor_binding(signed: SignedIn) -> str:
    """The CSRF binding of an editor's forms: their session, so a form dies with it."""
    return f"editor:{signed.session_id}"


def login_redirect_target(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/editor/login?next={quote(target, safe='')}"


def safe_next(value: str | None) -> str:
    """Only local editor paths: a login form must not become an open redirect."""
    if value and value.startswith("/editor") and not value.startswith("//"):
        return value
    return "/editor"


MEMBER_COOKIE = "digest_member"


class MemberSessions:
    """A signed-in member's cookie: their id and a nonce (the CSRF binding of their forms),
    signed with the site's key. It lasts ``days``; each request also asks the store that
    they are still a member (``still_member``), so unsubscribing ends every session."""

    def __init__(self, secret_key: str, days: int = 30) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="digest.member-session")
        self.max_age = days * 24 * 3600

    def new(self, member_id: int) -> str:
        return self._serializer.dumps({"m": member_id, "n": secrets.token_urlsafe(18)})

    def read(self, request: Request) -> tuple[int, str] | None:
        """(member id, session nonce) from the cookie, or None without a valid one."""
        raw = request.cookies.get(MEMBER_COOKIE)
        if not raw or len(raw) > 512:
            return None
        try:
            data = self._serializer.loads(raw, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        member_id, nonce = data.get("m"), data.get("n")
        if (
            not isinstance(member_id, int)
            or isinstance(member_id, bool)
            or not isinstance(nonce, str)
        ):
            return None
        return member_id, nonce
