"""The newsroom's people: editor accounts (``accounts``), their server-side sessions
(``sessions``) and the audit log of what they changed (``audit``)."""

from digest.editors.accounts import (
    EditorError,
    EditorView,
    add_editor,
    authenticate,
    count_editors,
    get_editor,
    list_editors,
    remove_editor,
)
from digest.editors.audit import recent, record
from digest.editors.sessions import SignedIn, end_all, end_session, lookup, start_session

__all__ = [
    "EditorError",
    "EditorView",
    "SignedIn",
    "add_editor",
    "authenticate",
    "count_editors",
    "end_all",
    "end_session",
    "get_editor",
    "list_editors",
    "lookup",
    "recent",
    "record",
    "remove_editor",
    "start_session",
]
