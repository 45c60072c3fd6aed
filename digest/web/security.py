"""CSRF tokens, the per-address rate limit and the editor session.

CSRF tokens are HMACs of a *binding*: the link token of a member page (so a form only works
for the page it came from), or a random nonce in a cookie (double submit) on the subscribe
and login pages, or the editor's session nonce. Nothing here keeps server-side state except
the rate limiter's recent hits, so any number of web processes can serve the same site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from digest.settings import Settings

CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "digest_csrf"
EDITOR_COOKIE = "digest_editor"


class CSRFError(Exception):
    """The form's CSRF token is missing or does not match its page: a 403, never a change."""


class EditorDisabled(Exception):
    """No editor password is configured, so nothing editorial is served."""


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


class EditorAuth:
    """Password check and a signed session cookie; changing the password ends every session."""

    def __init__(self, settings: Settings) -> None:
        self._password = settings.editor_password
        self._serializer = URLSafeTimedSerializer(settings.secret_key, salt="digest.editor-session")
        self._fingerprint = _b64(
            hmac.new(
                settings.secret_key.encode("utf-8"),
                b"editor-password\0" + self._password.encode("utf-8"),
                hashlib.sha256,
            ).digest()[:12]
        )
        self.max_age = max(1, settings.editor_session_hours) * 3600

    @property
    def enabled(self) -> bool:
        return bool(self._password)

    def check_password(self, given: str) -> bool:
        """Constant time whatever the lengths: both sides are hashed first."""
        if not self.enabled:
            return False
        want = hashlib.sha256(self._password.encode("utf-8")).digest()
        got = hashlib.sha256(given.encode("utf-8")).digest()
        return hmac.compare_digest(want, got)

    def new_session(self) -> str:
        return self._serializer.dumps({"n": secrets.token_urlsafe(18), "p": self._fingerprint})

    def session_nonce(self, request: Request) -> str | None:
        """The session's nonce (the editor's CSRF binding), or None without a valid session."""
        raw = request.cookies.get(EDITOR_COOKIE)
        if not raw or not self.enabled:
            return None
        try:
            data = self._serializer.loads(raw, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        if not hmac.compare_digest(str(data.get("p", "")), self._fingerprint):
            return None
        return str(data["n"])

    def require(self, request: Request) -> str:
        """The session nonce; raises when editing is disabled or the caller is not logged in."""
        if not self.enabled:
            raise EditorDisabled()
        nonce = self.session_nonce(request)
        if nonce is None:
            raise EditorLoginRequired()
        return nonce


def login_redirect_target(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/editor/login?next={quote(target, safe='')}"


def safe_next(value: str | None) -> str:
    """Only local editor paths: a login form must not become an open redirect."""
    if value and value.startswith("/editor") and not value.startswith("//"):
        return value
    return "/editor"
