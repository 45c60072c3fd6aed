"""Editor accounts in a real store: argon2 hashes, addresses and names by the members' rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlmodel import Session

from digest import editors
from digest.db import session_scope
from digest.editors import EditorError

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_add_and_authenticate(engine: Engine) -> None:
    with session_scope(engine) as session:
        view = editors.add_editor(
            session, " Ann@Example.ORG ", "Ann\r\nBcc: x", "passphrase-123", NOW
        )
    assert view.email == "ann@example.org" and view.name == "Ann Bcc: x"
    with session_scope(engine) as session:
        assert editors.authenticate(session, "ann@example.org", "passphrase-124", NOW) is None
        assert editors.authenticate(session, "nobody@example.org", "passphrase-123", NOW) is None
        found = editors.authenticate(session, "ANN@example.org", "passphrase-123", NOW)
        assert found is not None and found.last_login_at == NOW


def test_bad_input_names_the_field(engine: Engine) -> None:
    with session_scope(engine) as session:
        with pytest.raises(EditorError, match="^email:"):
            editors.add_editor(session, "no-at-sign", "", "passphrase-123", NOW)
        with pytest.raises(EditorError, match="^password: at least 12"):
            editors.add_editor(session, "a@example.org", "", "short", NOW)
        editors.add_editor(session, "a@example.org", "", "passphrase-123", NOW)
        with pytest.raises(EditorError, match="already an editor"):
            editors.add_editor(session, "A@example.org", "", "passphrase-123", NOW)


def test_weak_hashes_are_replaced_at_sign_in(engine: Engine) -> None:
    with session_scope(engine) as session:
        editors.add_editor(session, "a@example.org", "", "passphrase-123", NOW)
        row = editors.get_editor(session, "a@example.org")
        assert row is not None
        row.password_hash = PasswordHasher(time_cost=1, memory_cost=8192).hash("passphrase-123")
    with session_scope(engine) as session:
        assert editors.authenticate(session, "a@example.org", "passphrase-123", NOW) is not None
    with Session(engine) as session:
        row = editors.get_editor(session, "a@example.org")
        assert row is not None and not PasswordHasher().check_needs_rehash(row.password_hash)


def test_list_count_remove(engine: Engine) -> None:
    with session_scope(engine) as session:
        editors.add_editor(session, "b@example.org", "B", "passphrase-123", NOW)
        editors.add_editor(session, "a@example.org", "A", "passphrase-123", NOW)
    with session_scope(engine) as session:
        assert [e.email for e in editors.list_editors(session)] == [
            "a@example.org",
            "b@example.org",
        ]
        assert editors.count_editors(session) == 2
        editors.remove_editor(session, "b@example.org")
        with pytest.raises(LookupError):
            editors.remove_editor(session, "b@example.org")
    with Session(engine) as session:
        assert editors.count_editors(session) == 1
