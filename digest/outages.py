"""Outages of what a process depends on (the store, the SMTP server), as operators see them.

An outage is one WARNING when it begins and one INFO when it ends, with its duration: never a
line per failed attempt, never a traceback. While it lasts the ``Outage`` says since when and
why, for the process's heartbeat (``digest status``, ``/metrics``); ``wait_out`` retries a
call through one with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")

#: What a one-shot command (``digest run``, ``digest worker --once``) does about an SMTP
#: outage: it stops, and the deliveries it did not send wait for the next run.
STOPPING = "stopping (what is not sent stays planned for the next run)"

Monotonic = Callable[[], float]


class Outage:
    """Whether ``what`` (``the store``, ``the SMTP server``) is out, since when and why."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        wall_clock: Callable[[], datetime],
        monotonic: Monotonic = time.monotonic,
        then: str = "waiting for it",
        settle: float = 10.0,
    ) -> None:
        # ``then``: what the process does about it, as the WARNING says (a one-shot command
        # stops instead of waiting, and should not promise to wait)
        self.what, self.log, self.then = what, logger, then
        self._wall, self._monotonic = wall_clock, monotonic
        self._lock = threading.Lock()
        self.active = False  # read without the lock on hot paths: a bool is atomic
        self.began_at: datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.count = 0  # outages begun in this process
        self.recoveries = 0  # ... and ended (for the store: reconnects)
        self._started = 0.0
        # a failure this soon after an outage ended is its tail (another lane's connection,
        # broken while it lasted, failing on first use), not a new outage to announce
        self.settle = settle
        self._ended = float("-inf")

    def failed(self, reason: str) -> bool:
        """Note a failure; True (and one WARNING) when it begins an outage."""
        with self._lock:
            now = self._wall()
            self.last_error, self.last_error_at = f"{self.what}: {reason}", now
            if self.active:
                return False
            started = self._monotonic()
            if started - self._ended < self.settle:
                return False  # the tail of the outage just ended: said already
            self.active, self.began_at, self._started = True, now, started
            self.count += 1
        self.log.warning("%s is not reachable (%s); %s", self.what, reason, self.then)
        return True

    def recovered(self) -> float | None:
        """Note a success; the outage's length in seconds (and one INFO) if it ends one."""
        if not self.active:
            return None
        with self._lock:
            if not self.active:
                return None
            self.active = False
            self.recoveries += 1
            self._ended = self._monotonic()
            seconds = self._ended - self._started
        self.log.info("%s is reachable again after %s", self.what, duration(seconds))
        return seconds


def duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``2h 01m``: how long an outage lasted, for people."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class Backoff:
    """Waits between attempts: doubling from ``first`` up to ``most`` seconds."""

    def __init__(self, first: float = 0.5, most: float = 30.0) -> None:
        self.first, self.most = first, most
        self._next = first

    def next(self) -> float:
        wait, self._next = self._next, min(self._next * 2, self.most)
        return wait

    def reset(self) -> None:
        self._next = self.first


def wait_out(
    call: Callable[[], T],
    outage: Outage,
    is_outage: Callable[[BaseException], bool],
    reason: Callable[[BaseException], str],
    stop: Callable[[float], bool],
    *,
    backoff: Backoff | None = None,
) -> T:
    """``call()``, again and again through an outage, until it succeeds.

    ``stop(seconds)`` waits that long between attempts and says whether to give up: then the
    last error is raised. Any error ``is_outage`` does not accept is raised at once.
    """
    backoff = backoff or Backoff()
    while True:
        try:
            result = call()
        except Exception as exc:
            if not is_outage(exc):
                raise
            outage.failed(reason(exc))
            if stop(backoff.next()):
                raise
            continue
        outage.recovered()
        return result
