"""Claims held by another worker: who holds them, whether that process still runs, and what
``digest run`` and ``worker --once`` say (and do, with ``--wait-held``) about them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest import ledger
from digest.holders import ALIVE, DEAD, UNKNOWN, holder_state
from digest.models import Delivery
from digest.plan import plan
from digest.settings import Settings
from tests.conftest import CLI, PROJECT
from tests.smtp_faults import FaultHandler, fault_server
from tests.test_send import _env, seed, statuses

HOST = socket.gethostname()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that ran and is gone (reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_holder_state_by_host_and_pid(dead_pid: int, live_pid: int) -> None:
    assert holder_state(f"{HOST}:{os.getpid()}/1") == ALIVE
    assert holder_state(f"{HOST}:{live_pid}/2") == ALIVE
    assert holder_state(f"{HOST}:{live_pid}") == ALIVE
    assert holder_state(f"{HOST}:{dead_pid}/1") == DEAD
    assert holder_state(f"elsewhere.example:{dead_pid}/1") == UNKNOWN  # not ours to judge
    assert holder_state("w3/1") == UNKNOWN  # --worker-id names say nothing of a process
    assert holder_state(f"{HOST}:notapid/1") == UNKNOWN


def test_a_killed_but_unreaped_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while holder_state(f"{HOST}:{child.pid}/1") != DEAD and time.monotonic() < deadline:
            time.sleep(0.05)  # a zombie until reaped: kill(pid, 0) still succeeds
        assert holder_state(f"{HOST}:{child.pid}/1") == DEAD
    finally:
        child.wait()


def _hold(engine: Engine, holder: str, now: datetime, lease: float, limit: int) -> int:
    return len(ledger.claim(engine, holder, now, limit, timedelta(seconds=lease)))


def test_held_claims_by_holder_and_until(engine: Engine, settings: Settings) -> None:
    now = datetime(2026, 11, 24, 8, tzinfo=UTC)
    seed(engine, 7, now)
    assert plan(engine, settings, now, force=True).planned == 7
    assert _hold(engine, "a:1/1", now, 60, 3) == 3
    assert _hold(engine, "b:2/1", now, 10, 2) == 2
    with Session(engine) as session:
        held = ledger.held_claims(session, now + timedelta(seconds=5))
        later = ledger.held_claims(session, now + timedelta(seconds=30))
        mine = ledger.held_claims(session, now, subscriber_ids=[1])
    assert [(h.worker_id, h.count, h.until) for h in held] == [
        ("a:1/1", 3, now + timedelta(seconds=60)),
        ("b:2/1", 2, now + timedelta(seconds=10)),
    ]
    assert [(h.worker_id, h.count) for h in later] == [("a:1/1", 3)]  # b's lease ran out
    assert sum(h.count for h in mine) == 1


def _cli(settings: Settings, host: str, port: int, **extra: str) -> CLI:
    env = {k: v for k, v in _env(settings, host, port, **extra).items() if k.startswith("DIGEST")}
    return CLI({"DIGEST_CONFIG": "", **env})


def test_worker_once_exits_1_for_claims_of_a_dead_process_and_wait_held_sends_them(
    engine: Engine, settings: Settings, dead_pid: int, live_pid: int
) -> None:
    now = datetime.now(UTC)
    seed(engine, 10, now)
    assert plan(engine, settings, now, force=True).planned == 10
    assert _hold(engine, f"{HOST}:{dead_pid}/1", now, 4, 3) == 3
    assert _hold(engine, f"{HOST}:{live_pid}/1", now, 600, 2) == 2
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        cli = _cli(settings, host, port)
        first = cli("-q", "worker", "--once")
        assert first.exit_code == 1
        assert f"3 deliveries held by {HOST}:{dead_pid}/1 until " in first.stderr
        assert "no longer running" in first.stderr
        assert f"2 deliveries held by {HOST}:{live_pid}/1 until " in first.stderr
        assert "still running" in first.stderr
        assert handler.total == 5
        started = time.monotonic()
        second = cli("-q", "worker", "--once", "--wait-held")
        assert second.exit_code == 0, second.output
        assert time.monotonic() - started < 60
        assert "waiting" in second.stderr and f"{HOST}:{live_pid}/1" in second.stderr
    assert handler.total == 8 and set(handler.received.values()) == {1}
    assert statuses(engine) == {"sent": 8, "sending": 2}  # the live holder's, still its own


def test_run_after_a_killed_run_reports_what_the_dead_run_holds(
    engine: Engine, settings: Settings, db_url: str
) -> None:
    """``digest run`` killed with -9 part-way: the next run sends the rest and exits 1,
    naming the dead run's claims; ``--wait-held`` waits out their leases and sends them.
    (One backend: the claims are the ledger's, tested on both in test_ledger.)"""
    if not db_url.startswith("sqlite"):
        pytest.skip("one backend is enough for a killed run")
    now = datetime.now(UTC)
    seed(engine, 80, now)
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        env = _env(
            settings,
            host,
            port,
            DIGEST_RATE_PER_SECOND="20",
            DIGEST_LEASE_SECONDS="20",
            DIGEST_SMTP_POOL_SIZE="1",
            DIGEST_CLAIM_SIZE="30",
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "digest", "-q", "run", "--force", "--now", now.isoformat()],
            env=env,
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while handler.total < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        run.send_signal(signal.SIGKILL)
        run.wait()
        at_kill = handler.total
        with Session(engine) as session:
            held = session.exec(select(Delivery).where(Delivery.status == "sending")).all()
        assert held and {d.worker_id for d in held} == {f"{HOST}:{run.pid}/0"}
        cli = _cli(settings, host, port, DIGEST_LEASE_SECONDS="20")
        again = cli("-q", "run", "--force", "--now", now.isoformat())
        assert again.exit_code == 1, again.output
        assert f"{len(held)} deliveries held by {HOST}:{run.pid}/0 until " in again.stderr
        assert "no longer running" in again.stderr and "--wait-held" in again.stderr
        assert handler.total >= 80 - len(held)
        waited = cli("-q", "run", "--force", "--now", now.isoformat(), "--wait-held")
        assert waited.exit_code == 0, waited.output
    assert statuses(engine) == {"sent": 80}
    assert at_kill >= 5 and len(handler.received) == 80
    assert sum(n - 1 for n in handler.received.values()) <= 1  # the one in flight at the kill
