"""Server-side editor sessions: only a hash stored, ended by logout, expiry, removal."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from digest import editors
from digest.db import session_scope
from digest.models import EditorSession

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _editor(engine: Engine) -> int:
    with session_scope(engine) as session:
        return editors.add_editor(session, "a@example.org", "A", "passphrase-123", NOW).id


def test_start_lookup_end(engine: Engine) -> None:
    editor_id = _editor(engine)
    with session_scope(engine) as session:
        row = editors.get_editor(session, "a@example.org")
        assert row is not None
        token = editors.start_session(session, row, NOW, 12, "192.0.2.1")
        other = editors.start_session(session, row, NOW, 12)
    with Session(engine) as session:
        stored = [s.id for s in session.exec(select(EditorSession))]
    assert token not in stored and hashlib.sha256(token.encode()).hexdigest() in stored
    with session_scope(engine) as session:
        signed = editors.lookup(session, token, NOW + timedelta(hours=11))
        assert signed is not None and signed.editor_id == editor_id
        assert editors.lookup(session, token + "x", NOW) is None
        assert editors.lookup(session, token, NOW + timedelta(hours=12)) is None
        assert editors.end_session(session, token)
        assert editors.lookup(session, token, NOW) is None
        assert editors.lookup(session, other, NOW) is not None
        assert editors.end_all(session, editor_id) == 1
        assert editors.lookup(session, other, NOW) is None


def test_expired_sessions_are_cleared_at_the_next_sign_in(engine: Engine) -> None:
    _editor(engine)
    with session_scope(engine) as session:
        row = editors.get_editor(session, "a@example.org")
        assert row is not None
        editors.start_session(session, row, NOW, 1)
        editors.start_session(session, row, NOW + timedelta(hours=2), 1)
    with Session(engine) as session:
        assert len(session.exec(select(EditorSession)).all()) == 1
