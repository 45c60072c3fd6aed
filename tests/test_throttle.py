"""Rate limit and circuit breaker, driven by a fake clock (no real waiting)."""

from __future__ import annotations

from digest.throttle import CircuitBreaker, RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_per_second_rate_spaces_sends() -> None:
    t = FakeTime()
    limiter = RateLimiter(per_second=10, monotonic=t.monotonic, sleep=t.sleep)
    for _ in range(21):
        assert limiter.acquire()
    assert abs(t.now - 2.0) < 1e-9  # 21 sends at 10/s take 2 s


def test_pushback_halves_the_rate_for_a_while() -> None:
    t = FakeTime()
    limiter = RateLimiter(per_second=10, slowdown_seconds=60, monotonic=t.monotonic, sleep=t.sleep)
    limiter.pushback()
    assert limiter.current_rate == 5
    start = t.now
    for _ in range(6):
        limiter.acquire()
    assert abs((t.now - start) - 1.0) < 1e-9  # 6 sends at 5/s
    t.now += 61
    limiter.wait_time()
    assert limiter.current_rate == 10


def test_per_hour_cap_waits_for_the_window() -> None:
    t = FakeTime()
    limiter = RateLimiter(per_hour=3, monotonic=t.monotonic, sleep=t.sleep)
    for _ in range(3):
        assert limiter.wait_time() == 0
    assert limiter.wait_time() == 3600


def test_acquire_gives_up_when_told_to_stop() -> None:
    t = FakeTime()
    limiter = RateLimiter(per_hour=1, monotonic=t.monotonic, sleep=t.sleep)
    limiter.acquire()
    assert limiter.acquire(should_stop=lambda: t.now > 1) is False


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(threshold=3)
    breaker.failure("451")
    breaker.failure("451")
    breaker.success()
    breaker.failure("421")
    breaker.failure("421")
    assert not breaker.open
    breaker.failure("421 busy")
    assert breaker.open and breaker.last_error == "421 busy"
    breaker.reset()
    assert not breaker.open
    assert not CircuitBreaker(threshold=0).open
