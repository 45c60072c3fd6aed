"""Who holds a claim, and whether that process still runs on this host.

A sending lane claims deliveries under its worker id, ``host:pid/lane`` (``send.worker_name``
plus the lane's number). A process killed with ``kill -9`` cannot give its claims back: they
stay ``sending`` until their lease runs out. Whether such a holder is gone can be told only
on its own host, by its pid; a holder on another host, or named by ``--worker-id``, is
``UNKNOWN`` (never judged dead on a guess).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

ALIVE = "alive"
DEAD = "dead"
UNKNOWN = "unknown"


def parse_holder(worker_id: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a worker id in the ``host:pid[/lane]`` form, else None."""
    host, sep, pid = worker_id.split("/", 1)[0].rpartition(":")
    if not sep or not host or not pid.isascii() or not pid.isdigit():
        return None
    return host, int(pid)


def holder_state(worker_id: str, host: str | None = None) -> str:
    """``ALIVE``, ``DEAD`` or ``UNKNOWN`` for the process a worker id names.

    A process that was killed but not yet reaped by its parent (a zombie) is dead: it will
    never send or release anything again.
    """
    parsed = parse_holder(worker_id)
    if parsed is None or parsed[0] != (host or socket.gethostname()):
        return UNKNOWN
    pid = parsed[1]
    if pid == os.getpid():
        return ALIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return DEAD
    except PermissionError:
        return ALIVE  # someone else's process, but running
    except OSError:
        return UNKNOWN
    return DEAD if _zombie(pid) else ALIVE


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc here: a running pid counts as alive
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
