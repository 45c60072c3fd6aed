"""systemd readiness (``Type=notify``): the few lines of the sd_notify protocol.

systemd names a datagram socket in ``NOTIFY_SOCKET``; a service tells it ``READY=1`` once it
serves, ``STOPPING=1`` when it begins to stop, and ``STATUS=...`` lines that
``systemctl status`` shows. Outside systemd the variable is unset and nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``READY=1``, ``STATUS=...``) to systemd; False when not under it."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError:  # systemd went away, or the socket is not ours: nothing to tell
        return False
    return True


def ready(status: str = "") -> bool:
    """The service is up: ``READY=1`` (with a status line when given)."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status for ``systemctl status`` (newlines would end it)."""
    return notify("STATUS=" + " ".join(text.split()))
