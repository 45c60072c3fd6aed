"""Sending pace: a rate limit shared by a worker's connections, and a circuit breaker.

Both take the clock and the sleep function as arguments so tests can drive them without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Monotonic = Callable[[], float]
Sleep = Callable[[float], None]


class RateLimiter:
    """At most ``per_second`` and ``per_hour`` sends (0 = unlimited), across threads.

    Pushback from the server (421/451) halves the per-second pace for ``slowdown_seconds``.
    """

    def __init__(
        self,
        per_second: float = 0.0,
        per_hour: int = 0,
        slowdown_seconds: float = 60.0,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.per_second = per_second
        self.per_hour = per_hour
        self.slowdown_seconds = slowdown_seconds
        self._monotonic, self._sleep = monotonic, sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._hour: deque[float] = deque()
        self._slow_until = 0.0
        self._factor = 1.0

    def pushback(self) -> None:
        """The server asked us to slow down: halve the pace (down to 1/16) for a while."""
        with self._lock:
            self._factor = max(self._factor / 2, 1 / 16)
            self._slow_until = self._monotonic() + self.slowdown_seconds

    @property
    def current_rate(self) -> float:
        return self.per_second * self._factor if self.per_second else 0.0

    def wait_time(self) -> float:
        """Reserve a slot; return how long to sleep before using it."""
        with self._lock:
            now = self._monotonic()
            if self._factor < 1.0 and now >= self._slow_until:
                self._factor = 1.0
            at = now
            if self.per_second:
                at = max(at, self._next_slot)
                self._next_slot = at + 1.0 / (self.per_second * self._factor)
            if self.per_hour:
                while self._hour and self._hour[0] <= now - 3600:
                    self._hour.popleft()
                if len(self._hour) >= self.per_hour:
                    at = max(at, self._hour[0] + 3600)
                self._hour.append(at)
            return max(0.0, at - now)

    def acquire(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a slot in short steps; False if told to stop while waiting."""
        delay = self.wait_time()
        while delay > 0:
            if should_stop():
                return False
            step = min(delay, 0.5)
            self._sleep(step)
            delay -= step
        return True


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures so a broken server doesn't eat the list."""

    threshold: int = 20

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.consecutive = 0
        self.last_error = ""

    def success(self) -> None:
        with self._lock:
            self.consecutive = 0

    def failure(self, reason: str) -> None:
        with self._lock:
            self.consecutive += 1
            self.last_error = reason

    @property
    def open(self) -> bool:
        return self.threshold > 0 and self.consecutive >= self.threshold

    def reset(self) -> None:
        with self._lock:
            self.consecutive = 0
