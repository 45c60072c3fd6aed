"""Editors' sessions, kept in the store so they can be ended: the cookie holds a random
token, the row its SHA-256. Logging out deletes the row, so a copied cookie stops working;
removing an editor deletes all of theirs. Sessions last ``editor_session_hours``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select

from digest.models import Editor, EditorSession

#: ``last_seen_at`` is written at most this often, not on every page.
_TOUCH = timedelta(minutes=5)


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in: the session's id (also the editor's CSRF binding) and the editor."""

    session_id: str
    editor_id: int
    email: str
    name: str

    @property
    def label(self) -> str:
        return self.email


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(
    session: Session, editor: Editor, now: datetime, hours: float, client: str = ""
) -> str:
    """A new session for ``editor``; returns the cookie value (only its hash is stored)."""
    assert editor.id is not None
    token = secrets.token_urlsafe(32)
    session.add(
        EditorSession(
            id=_key(token),
            editor_id=editor.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=hours),
            client=client[:100],
        )
    )
    # expired sessions go when someone signs in: the table never grows without bound
    session.exec(delete(EditorSession).where(col(EditorSession.expires_at) < now))  # type: ignore[call-overload]
    return token


def lookup(session: Session, token: str | None, now: datetime) -> SignedIn | None:
    """The signed-in editor for a cookie value, or None (unknown, ended or expired)."""
    if not token or len(token) > 200:
        return None
    row = session.exec(
        select(EditorSession, Editor)
        .join(Editor, col(Editor.id) == col(EditorSession.editor_id))
        .where(col(EditorSession.id) == _key(token))
    ).first()
    if row is None:
        return None
    found, editor = row
    if found.expires_at <= now:
        return None
    if now - found.last_seen_at >= _TOUCH:
        found.last_seen_at = now
        session.add(found)
    return SignedIn(found.id, found.editor_id, editor.email, editor.name)


def end_session(session: Session, token: str | None) -> bool:
    """Log out: the row goes, so the cookie (and any copy of it) no longer works."""
    if not token:
        return False
    found = session.get(EditorSession, _key(token))
    if found is None:
        return False
    session.delete(found)
    return True


def end_all(session: Session, editor_id: int) -> int:
    """End every session of one editor (``digest editors remove``); how many there were."""
    ended = session.exec(
        delete(EditorSession).where(col(EditorSession.editor_id) == editor_id)  # type: ignore[call-overload]
    )
    return int(ended.rowcount or 0)
