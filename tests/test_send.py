"""The delivery engine under faults, crashes and concurrency: nothing lost, nothing sent twice."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, update
from sqlmodel import Session, col, select

from digest import ledger
from digest.catalog import ensure_topics
from digest.clock import fixed_clock, running_clock
from digest.db import session_scope
from digest.editions import Editions
from digest.ingest import ArticleRecord, upsert_articles
from digest.mailer import SMTPTransport
from digest.models import Delivery, Subscriber, SubscriberTopic
from digest.plan import plan
from digest.send import Sender, SendReport
from digest.settings import Settings
from tests.conftest import PG_URL, PROJECT, TEST_SECRET, SMTPServer, free_port
from tests.smtp_faults import FaultHandler, FaultRule, fault_server, greeting_refuser
from tests.tcp_proxy import tcp_proxy

NOW = datetime(2026, 11, 24, 8, tzinfo=UTC)


def seed(engine: Engine, members: int, now: datetime = NOW) -> None:
    """``members`` daily members on "Space" at 07:00 UTC and one new Space article."""
    record = ArticleRecord(
        url="https://archive.example.org/space-news",
        title="Space news",
        published_at=now - timedelta(hours=3),
        key_points=("A probe reached the outer planets.",),
        topics=("Space",),
    )
    with session_scope(engine) as session:
        upsert_articles(session, [record], now - timedelta(hours=2))
        (topic,) = ensure_topics(session, ["Space"])
        rows = [
            {
                "email": f"m{i:05d}@example.org",
                "name": f"Member {i}",
                "status": "active",
                "frequency": "daily",
                "timezone": "UTC",
                "send_hour": 7,
                "created_at": now - timedelta(days=3),
                "updated_at": now - timedelta(days=3),
            }
            for i in range(members)
        ]
        for i in range(0, len(rows), 1000):
            session.execute(insert(Subscriber), rows[i : i + 1000])
        ids = session.exec(select(Subscriber.id)).all()
        session.execute(
            insert(SubscriberTopic), [{"subscriber_id": i, "topic_id": topic.id} for i in ids]
        )


def engine_settings(settings: Settings, host: str, port: int, **extra: object) -> Settings:
    return settings.replace(
        smtp_host=host, smtp_port=port, smtp_timeout=1.0, retry_base_seconds=60, **extra
    )


def smtp_sender(engine: Engine, s: Settings) -> Sender:
    """A sender over the real SMTP transport, at the test's fixed time."""
    return Sender(engine, s, Editions(s), lambda: SMTPTransport.from_settings(s), fixed_clock(NOW))


def statuses(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.exec(select(Delivery.status, func.count()).group_by(Delivery.status))
        return dict(rows.all())


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "sendmail"])
def test_faults_end_sent_or_failed_with_reasons(
    engine: Engine, settings: Settings, pipelining: bool
) -> None:
    seed(engine, 12)
    handler = FaultHandler(
        pipelining=pipelining,
        rules={
            "m00001@example.org": FaultRule("421 4.7.0 too busy", times=1),
            "m00002@example.org": FaultRule("451 4.3.0 greylisted", times=2),
            "m00003@example.org": FaultRule("550 5.1.1 no such user"),
            "m00004@example.org": FaultRule("drop", times=1),
            "m00005@example.org": FaultRule("stall", times=1),
            "m00006@example.org": FaultRule("554 5.7.1 rejected by policy"),
        },
        stall_seconds=2.5,
    )
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, max_consecutive_errors=0)
        assert plan(engine, s, NOW).planned == 12
        now = NOW
        for _ in range(8):  # the clock moves on by an hour each round, past any backoff
            Sender(
                engine, s, Editions(s), lambda: SMTPTransport.from_settings(s), fixed_clock(now)
            ).run()
            if not {"retry", "planned"} & statuses(engine).keys():
                break
            now += timedelta(hours=1)
    assert statuses(engine) == {"sent": 10, "failed": 2}
    with Session(engine) as session:
        rows = {
            m.email: d
            for d, m in session.exec(
                select(Delivery, Subscriber).join(
                    Subscriber, Subscriber.id == Delivery.subscriber_id
                )
            )
        }
        bounced = session.exec(select(Subscriber).where(Subscriber.status == "bounced")).all()
    assert (
        rows["m00003@example.org"].smtp_code == 550
        and "no such user" in rows["m00003@example.org"].error
    )
    assert rows["m00006@example.org"].smtp_code == 554
    assert [m.email for m in bounced] == ["m00003@example.org"]  # 554 is not a hard bounce
    assert rows["m00002@example.org"].attempts == 3
    assert rows["m00005@example.org"].status == "sent"  # after the stall, on a new connection
    # Every message the server accepted, it accepted once; every sent delivery arrived.
    assert set(handler.received.values()) == {1}
    assert handler.total == 10
    assert {r.message_id for r in rows.values() if r.status == "sent"} == set(handler.received)


def test_consecutive_errors_pause_sending(engine: Engine, settings: Settings) -> None:
    seed(engine, 30)
    handler = FaultHandler(fail_first=1000)
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, max_consecutive_errors=5, smtp_pool_size=1)
        plan(engine, s, NOW)
        report = smtp_sender(engine, s).run()
    assert report.paused_reason is not None and "451" in report.paused_reason
    assert report.retry == 5  # it stopped instead of burning through the list
    counts = statuses(engine)
    assert counts.get("planned", 0) == 25 and counts["retry"] == 5


def _env(settings: Settings, host: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=settings.database_url,
        DIGEST_SECRET_KEY=TEST_SECRET,
        DIGEST_FROM=settings.from_address,
        DIGEST_BASE_URL=settings.base_url,
        DIGEST_SMTP_HOST=host,
        DIGEST_SMTP_PORT=str(port),
    )
    env.update(extra)
    return env


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "-q", "worker", *args],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_worker_killed_midway_is_finished_by_another(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    now = datetime.now(UTC)  # the worker reads the real clock
    seed(engine, 2000, now)
    assert plan(engine, settings, now, force=True).planned == 2000
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        env = _env(settings, host, port, DIGEST_LEASE_SECONDS="2", DIGEST_SMTP_POOL_SIZE="2")
        first = _worker(env, "--once")
        deadline = time.monotonic() + 60
        while handler.total < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = handler.total
        assert 0 < at_kill < 2000, "the kill must land part-way"
        time.sleep(2.5)  # the dead worker's leases expire
        second = _worker(env, "--once")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err.decode()
    assert statuses(engine) == {"sent": 2000}
    with Session(engine) as session:
        planned_ids = set(session.exec(select(Delivery.message_id)).all())
    assert set(handler.received) == planned_ids  # every delivery arrived at least once
    repeats = {mid: n for mid, n in handler.received.items() if n > 1}
    assert sum(n - 1 for n in repeats.values()) <= 2  # at most the pool size, same Message-ID


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (DIGEST_TEST_POSTGRES_URL)")
def test_four_workers_on_postgresql_send_each_once(
    engine: Engine, settings: Settings, db_url: str
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL run only")
    now = datetime.now(UTC)
    seed(engine, 5000, now)
    assert plan(engine, settings, now, force=True).planned == 5000
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        env = _env(settings, host, port, DIGEST_SMTP_POOL_SIZE="2", DIGEST_CLAIM_SIZE="20")
        workers = [_worker(env, "--once", "--worker-id", f"w{i}") for i in range(4)]
        for w in workers:
            _, err = w.communicate(timeout=300)
            assert w.returncode == 0, err.decode()
    assert handler.total == 5000
    assert set(handler.received.values()) == {1}
    assert statuses(engine) == {"sent": 5000}
    with Session(engine) as session:
        sent_ids = set(session.exec(select(Delivery.message_id)).all())
        workers_used = set(session.exec(select(Delivery.worker_id)).all())
    assert sent_ids == set(handler.received)
    assert len(workers_used) > 1


def test_worker_once_exits_1_when_deliveries_wait_for_a_retry(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    seed(engine, 3, now)
    assert plan(engine, settings, now, force=True).planned == 3
    handler = FaultHandler(
        rules={f"m0000{i}@example.org": FaultRule("451 4.7.1 later") for i in range(3)}
    )
    with fault_server(handler) as (host, port):
        worker = _worker(_env(settings, host, port), "--once")
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert b"sent 0, retry 3, failed 0" in out
    assert b"0 deliveries failed, 3 to retry later" in err
    assert statuses(engine) == {"retry": 3}


def test_worker_once_with_the_server_away_exits_1_and_counts_no_attempt(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    seed(engine, 3, now)
    assert plan(engine, settings, now, force=True).planned == 3
    closed = free_port()  # nothing listens: the server is away, not any message's fault
    worker = _worker(_env(settings, "127.0.0.1", closed), "--once")
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert b"sending paused: the SMTP server is unavailable" in err
    assert b"Traceback" not in err
    assert statuses(engine) == {"planned": 3}
    with Session(engine) as session:
        assert {d.attempts for d in session.exec(select(Delivery)).all()} == {0}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_worker_sigterm_finishes_in_flight_and_releases_claims(
    engine: Engine, settings: Settings, signum: signal.Signals
) -> None:
    now = datetime.now(UTC)
    seed(engine, 60, now)
    assert plan(engine, settings, now, force=True).planned == 60
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        env = _env(settings, host, port, DIGEST_RATE_PER_SECOND="10", DIGEST_CLAIM_SIZE="20")
        worker = _worker(env)  # the sending loop, not --once
        deadline = time.monotonic() + 30
        while handler.total < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signum)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err.decode()
    counts = statuses(engine)
    assert "sending" not in counts
    assert counts["sent"] == handler.total and counts["planned"] == 60 - handler.total
    with Session(engine) as session:
        waiting = session.exec(select(Delivery).where(Delivery.status == "planned")).all()
    assert all(d.worker_id is None and d.attempts == 0 for d in waiting)


def test_run_stopped_by_sigterm_records_what_went_and_gives_back_the_rest(
    engine: Engine, settings: Settings
) -> None:
    now = datetime.now(UTC)
    seed(engine, 60, now)
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        env = _env(settings, host, port, DIGEST_RATE_PER_SECOND="10", DIGEST_CLAIM_SIZE="20")
        run = subprocess.Popen(
            [sys.executable, "-m", "digest", "-q", "run", "--force", "--now", now.isoformat()],
            env=env,
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while handler.total < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 1, err.decode()
    counts = statuses(engine)
    assert "sending" not in counts and set(handler.received.values()) == {1}
    assert counts["sent"] == handler.total and counts["planned"] == 60 - handler.total
    assert b"stopped before everything was sent" in err


def test_rate_limit_and_pushback_pace_real_sends(engine: Engine, settings: Settings) -> None:
    seed(engine, 21)
    handler = FaultHandler(rules={"m00000@example.org": FaultRule("451 4.7.0 slow down", times=1)})
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, rate_per_second=20.0, smtp_pool_size=2)
        plan(engine, s, NOW)
        started = time.monotonic()
        report = smtp_sender(engine, s).run()
        elapsed = time.monotonic() - started
    assert report.sent == 20 and report.retry == 1
    # 21 sends at 20/s take at least one second; after the 451 the pace halves to 10/s.
    assert elapsed >= 1.4


class _Logged:
    """A transport that notes when each message is handed over and its verdict read."""

    def __init__(self, inner: SMTPTransport, events: list[tuple[str, str]]) -> None:
        self.inner, self.events = inner, events

    def begin(self, sender: str, recipient: str, data: bytes, message_id: str = "") -> Any:
        self.events.append(("begin", recipient))
        finish = self.inner.begin(sender, recipient, data, message_id)

        def logged() -> Any:
            self.events.append(("finish", recipient))
            return finish()

        return logged

    def send(self, sender: str, recipient: str, data: bytes, message_id: str = "") -> Any:
        return self.begin(sender, recipient, data, message_id)()

    def close(self) -> None:
        self.inner.close()


def test_lane_renders_the_next_message_while_the_server_takes_the_last(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    """One message in flight per lane: message N+1 is rendered before N's verdict is read,
    and handed over only after N is recorded."""
    seed(engine, 4)
    s = engine_settings(settings, smtp_server.host, smtp_server.port, smtp_pool_size=1)
    plan(engine, s, NOW)
    events: list[tuple[str, str]] = []
    editions = Editions(s)
    render = editions.message_for

    def noted(member: Any, *args: Any, **kwargs: Any) -> Any:
        events.append(("render", member.email))
        return render(member, *args, **kwargs)

    editions.message_for = noted  # type: ignore[method-assign]
    sender = Sender(
        engine, s, editions, lambda: _Logged(SMTPTransport.from_settings(s), events),
        fixed_clock(NOW),
    )  # fmt: skip
    recorded: list[str] = []
    record = sender._record

    def noted_record(recorder: Any, outcome: Any, delivery: Any, *rest: Any) -> None:
        with Session(engine) as session:  # the previous message is in the ledger already
            done = session.exec(select(func.count()).where(Delivery.status == "sent")).one()
        assert done == len(recorded)
        recorded.append(outcome.status)
        events.append(("record", str(delivery.subscriber_id)))
        record(recorder, outcome, delivery, *rest)

    sender._record = noted_record  # type: ignore[method-assign]
    report = sender.run()
    assert report.sent == 4 and recorded == ["sent"] * 4
    kinds = [kind for kind, _ in events]
    assert kinds == ["render", "begin"] + ["render", "finish", "record", "begin"] * 3 + [
        "finish",
        "record",
    ]
    in_flight = 0
    for kind in kinds:
        in_flight += {"begin": 1, "finish": -1}.get(kind, 0)
        assert 0 <= in_flight <= 1
    assert len(smtp_server.messages) == 4 and statuses(engine) == {"sent": 4}


def test_a_message_handed_over_is_recorded_when_the_lane_dies_rendering_the_next(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    seed(engine, 5)
    s = engine_settings(settings, smtp_server.host, smtp_server.port, smtp_pool_size=1)
    plan(engine, s, NOW)
    editions = Editions(s)
    render = editions.message_for
    calls = 0

    def dies_third(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # not a render error: the lane itself stops
        return render(*args, **kwargs)

    editions.message_for = dies_third  # type: ignore[method-assign]
    sender = Sender(engine, s, editions, lambda: SMTPTransport.from_settings(s), fixed_clock(NOW))
    with pytest.raises(KeyboardInterrupt):
        sender.run()
    # the second message was on the wire when the third render died: it is recorded as sent
    assert len(smtp_server.messages) == 2
    assert statuses(engine) == {"sent": 2, "sending": 3}


def test_pace_opens_a_lane_only_when_waiting_for_the_server_dominates() -> None:
    from digest.send import _Pace

    now = [0.0]
    pace = _Pace(clock=lambda: now[0])

    def spend(render: float, wait: float) -> None:
        now[0] += render
        with pace.waiting():
            now[0] += wait

    spend(0.3, 0.2)
    assert pace.lap() is None  # under a second: too early to judge
    spend(0.4, 0.3)  # 1.2 s, 0.5 s waiting: rendering keeps up
    assert pace.lap() is None
    spend(0.1, 0.9)  # a fresh window: 90% waiting
    reason = pace.lap()
    assert reason is not None and "90%" in reason


class _SlowHandler(FaultHandler):
    """A far server: every message's reply comes 40 ms late."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(0.04)
        return reply


def test_a_far_server_gets_more_lanes_and_each_message_once(
    engine: Engine, settings: Settings
) -> None:
    seed(engine, 90)
    handler = _SlowHandler()
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, smtp_pool_size=3, claim_size=5)
        plan(engine, s, NOW)
        report = smtp_sender(engine, s).run()
    assert report.lanes == 3  # one lane mostly waited: a second opened, then a third
    assert report.sent == 90 and statuses(engine) == {"sent": 90}
    assert handler.total == 90 and set(handler.received.values()) == {1}


def test_a_near_server_keeps_one_lane(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark's sink answers at once: one lane renders while it takes each message.

    A lane opens another only when its pace says the server's replies took most of its time.
    On a quiet machine they never do here; on a busy one the sink itself can be starved of
    CPU and its replies really are slow, so the test holds the engine to its own measure:
    exactly one lane more for each window its pace judged mostly waiting (up to the pool).
    """
    from benchmarks.send import Sink
    from digest.send import _Pace

    verdicts: list[str | None] = []
    real_lap = _Pace.lap

    def lap(self: _Pace) -> str | None:
        verdict = real_lap(self)
        verdicts.append(verdict)
        return verdict

    monkeypatch.setattr(_Pace, "lap", lap)
    seed(engine, 400)
    sink = Sink()
    try:
        s = engine_settings(settings, "127.0.0.1", sink.port, smtp_pool_size=3, claim_size=20)
        plan(engine, s, NOW)
        report = smtp_sender(engine, s).run()
        assert sink.stats()["messages"] == 400
    finally:
        sink.stop()
    assert report.sent == 400
    asked = sum(1 for v in verdicts if v is not None)
    assert report.lanes == min(3, 1 + asked)
    if asked == 0:  # the usual case: a near server never keeps a lane waiting
        assert report.lanes == 1


def test_a_lane_paced_past_its_lease_keeps_its_claims(engine: Engine, settings: Settings) -> None:
    """A lane whose sending outlasts its lease (a rate limit, a slow server) renews it, so a
    second worker that starts meanwhile finds nothing to take, and no message arrives twice.

    Time is the test's: each message takes a second of it, so the lease (2 s) runs out
    mid-claim on any machine, busy or not; the second worker starts after the third message.
    """
    seed(engine, 6)
    handler = FaultHandler()
    clock = [NOW]
    reports: dict[str, Any] = {}
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, lease_seconds=2, claim_size=6, smtp_pool_size=1)
        assert plan(engine, s, NOW).planned == 6

        def worker(name: str, transports: Callable[[], Any]) -> Sender:
            return Sender(engine, s, Editions(s), transports, lambda: clock[-1], worker_id=name)

        class SecondPerMessage:
            def __init__(self) -> None:
                self.inner = SMTPTransport.from_settings(s)

            def send(self, sender: str, recipient: str, data: bytes, message_id: str) -> Any:
                result = self.inner.send(sender, recipient, data, message_id)
                clock.append(clock[-1] + timedelta(seconds=1))
                if handler.total == 3:  # past the first lease, half the claims still to send
                    reports["b"] = worker("b", lambda: SMTPTransport.from_settings(s)).run()
                return result

            def close(self) -> None:
                self.inner.close()

        reports["a"] = worker("a", SecondPerMessage).run()
    assert clock[-1] - NOW == timedelta(seconds=6)  # three times the lease
    assert handler.total == 6 and set(handler.received.values()) == {1}
    assert reports["a"].sent == 6 and reports["b"].sent == 0
    assert statuses(engine) == {"sent": 6}


def test_renew_extends_only_the_claims_still_held(engine: Engine, settings: Settings) -> None:
    seed(engine, 3)
    plan(engine, settings, NOW)
    lease = timedelta(seconds=60)
    mine = ledger.claim(engine, "a/0", NOW, 3, lease)
    later = NOW + timedelta(seconds=90)  # the lease has run out; "b/0" takes one row
    theirs = ledger.claim(engine, "b/0", later, 1, lease)
    held = ledger.renew(engine, [d.id for d in mine], "a/0", later, lease)
    assert held == {d.id for d in mine} - {theirs[0].id} and len(held) == 2
    with Session(engine) as session:
        rows = {d.id: d for d in session.exec(select(Delivery))}
    assert all(rows[i].lease_until == later + lease for i in held)
    assert rows[theirs[0].id].worker_id == "b/0"
    # an outcome for a row this worker lost changes nothing, and says so
    lost = ledger.Outcome(theirs[0].id, "sent", 250, "ok")
    assert ledger.record(engine, [lost], "a/0", later) == 0
    assert ledger.Recorder(engine).record([lost], "a/0", later) == 0
    assert ledger.Recorder(engine).record([lost], "b/0", later) == 1


def test_running_clock_starts_at_the_given_instant_and_runs() -> None:
    """`digest run --now T` replays T, while its leases and retries see real time pass."""
    ticks = iter([10.0, 10.0, 12.5])
    clock = running_clock(NOW, lambda: next(ticks))
    assert clock() == NOW and clock() == NOW + timedelta(seconds=2.5)


def test_two_runs_at_once_plan_each_edition_once(engine: Engine, settings: Settings) -> None:
    seed(engine, 300)
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        env = _env(settings, host, port)
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "digest", "-q", "run", "--now", NOW.isoformat()],
                env=env,
                cwd=PROJECT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        for r in runs:
            _, err = r.communicate(timeout=180)
            assert r.returncode == 0, err.decode()
    with Session(engine) as session:
        rows = session.exec(select(Delivery.subscriber_id, Delivery.edition)).all()
    assert len(rows) == 300 == len(set(rows))
    assert handler.total == 300 and set(handler.received.values()) == {1}


def test_two_plans_straddling_a_due_time_plan_an_article_once(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clocks 20 s apart across a member's send hour compute two edition keys; taking turns,
    the second planner sees the first's edition and plans no overlapping window."""
    day = datetime(2026, 11, 24, 14, tzinfo=UTC)
    seed(engine, 1, now=day)
    with session_scope(engine) as session:
        session.execute(update(Subscriber).values(send_hour=0))
    # each planner waits (briefly) for the other after reading the member's history, so
    # without turns both read it before either writes
    both_read = threading.Barrier(2, timeout=2)
    read = ledger.member_history

    def read_then_wait(session: Session, ids: Any) -> Any:
        history = read(session, ids)
        try:
            both_read.wait()
        except threading.BrokenBarrierError:
            pass
        return history

    monkeypatch.setattr(ledger, "member_history", read_then_wait)
    clocks = (day.replace(hour=23, minute=59, second=50), day.replace(day=25, hour=0, second=10))
    planners = [threading.Thread(target=plan, args=(engine, settings, now)) for now in clocks]
    for t in planners:
        t.start()
    for t in planners:
        t.join()
    with Session(engine) as session:
        rows = session.exec(select(Delivery).where(Delivery.status == "planned")).all()
    assert len(rows) == 1 and rows[0].article_ids


def test_an_edition_failing_after_the_next_was_planned_leaves_its_articles_owed(
    engine: Engine, settings: Settings
) -> None:
    """Day 1 waits for a retry while day 2 is planned from its end; then day 1 fails for good.
    Day 3 carries day 1's article, and not day 2's, which the member already has."""
    seed(engine, 1)  # article 1, "Space news"
    handler = FaultHandler(rules={"m00000@example.org": FaultRule("451 4.2.2 mailbox full")})
    with fault_server(handler) as (host, port):
        s = engine_settings(settings, host, port, smtp_pool_size=1)

        def send(at: datetime) -> None:
            Sender(
                engine, s, Editions(s), lambda: SMTPTransport.from_settings(s), fixed_clock(at)
            ).run()

        day2 = ArticleRecord(
            url="https://archive.example.org/day-2", title="Day 2",
            published_at=NOW + timedelta(hours=12), key_points=("x",), topics=("Space",),
        )  # fmt: skip
        plan(engine, s, NOW)
        send(NOW)  # day 1: 451, a retry
        with session_scope(engine) as session:
            upsert_articles(session, [day2], NOW + timedelta(hours=13))
        plan(engine, s, NOW + timedelta(days=1))  # day 2 planned while day 1 waits
        handler.rules["m00000@example.org"] = FaultRule("554 5.7.1 policy", times=1)
        send(NOW + timedelta(days=1, hours=1))  # day 1 fails for good; day 2 is sent
        plan(engine, s, NOW + timedelta(days=2))
        send(NOW + timedelta(days=2, hours=1))
        plan(engine, s, NOW + timedelta(days=3))  # nothing owed any more: nothing new
    with Session(engine) as session:
        rows = session.exec(select(Delivery).order_by(col(Delivery.id))).all()
    by_day = {d.edition: (d.status, d.article_ids) for d in rows}
    assert by_day["daily:2026-11-24"][0] == "failed"
    assert by_day["daily:2026-11-25"] == ("sent", [2])
    assert by_day["daily:2026-11-26"] == ("sent", [1])  # owed, and not day 2's again
    assert by_day["daily:2026-11-27"][0] == "skipped"
    sent = [i for d in rows if d.status == "sent" for i in d.article_ids]
    assert sorted(sent) == [1, 2]


def test_an_smtp_outage_of_any_length_ends_with_every_delivery_sent_once(
    engine: Engine, settings: Settings, db_url: str
) -> None:
    """The server goes away mid-send (connections refused), then greets with 421 for as many
    retries as a 10-minute outage would bring at the default pause (with pause_seconds=1:
    the clock scaled through the settings). No delivery spends an attempt on it: with the
    default max_attempts all 800 end sent, each message received once. (One backend: the
    store is not what this outage is about; status on both is tested in test_cli.)"""
    if not db_url.startswith("sqlite"):
        pytest.skip("one backend is enough for an SMTP outage")
    now = datetime.now(UTC)
    seed(engine, 800, now)
    assert plan(engine, settings, now, force=True).planned == 800
    handler = FaultHandler()
    port = free_port()
    env = _env(
        settings,
        "127.0.0.1",
        port,
        DIGEST_PAUSE_SECONDS="1",
        DIGEST_SMTP_TIMEOUT="5",
        DIGEST_RATE_PER_SECOND="400",
        DIGEST_HEARTBEAT_SECONDS="1",
    )
    with fault_server(handler, port):
        worker = subprocess.Popen(
            [sys.executable, "-m", "digest", "worker"],
            env=env,
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: handler.total >= 300, 120)
    before = handler.total
    assert before < 800, "the outage must land part-way"
    # down: nothing listens, then the server greets every session with 421 ten times over
    wait_for(lambda: statuses(engine).get("sending", 0) == 0, 60)
    with greeting_refuser(port) as refuser:
        wait_for(lambda: refuser.greeted >= 10, 120)
        # `digest status` shows the outage while it lasts
        (shown,) = status_of_workers(env)
        assert shown["state"] == "waiting for the SMTP server"
        assert shown["last_error"].startswith("the SMTP server: 421 4.3.2 Service not available")
    with fault_server(handler, port):
        wait_for(lambda: statuses(engine) == {"sent": 800}, 300)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    log = err.decode()
    assert worker.returncode == 0, log
    assert handler.total == 800 and set(handler.received.values()) == {1}
    with Session(engine) as session:
        attempts = dict(
            session.exec(select(Delivery.attempts, func.count()).group_by(Delivery.attempts)).all()
        )
    # the outage cost no delivery an attempt; only a message in flight when the server went
    # (one per lane) counts one, since the server might have taken it (no reply to its end)
    assert set(attempts) <= {1, 2} and attempts.get(2, 0) <= 3
    assert "Traceback" not in log
    assert log.count("the SMTP server is not reachable") == 1  # one WARNING when it began
    assert log.count("the SMTP server is reachable again after") == 1  # one INFO at the end
    assert "sent 0, retry 0, failed 0 (0 bounced), released" not in log  # no line per pause


def test_summary_line_is_quiet_for_runs_that_only_waited_on_the_smtp_server() -> None:
    """A worker riding out an outage retries every pause_seconds and gives its claims back
    each time; those runs changed nothing, so their summary stays out of the INFO log."""
    assert SendReport().log_level() == logging.DEBUG  # an idle poll
    waited = SendReport(claimed=50, released=50, smtp_outage=True)
    assert waited.log_level() == logging.DEBUG
    began = SendReport(claimed=50, sent=46, released=4, smtp_outage=True)
    assert began.log_level() == logging.INFO  # the run the outage cut short: what it sent
    stopped = SendReport(claimed=50, released=50)  # SIGTERM gave them back: worth saying
    assert stopped.log_level() == logging.INFO


def status_of_workers(env: dict[str, str]) -> list[dict[str, Any]]:
    """The worker processes as ``digest status --json`` shows them."""
    done = subprocess.run(
        [sys.executable, "-m", "digest", "status", "--json"],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [p for p in json.loads(done.stdout)["processes"] if p["kind"] == "worker"]


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (a generous bound only)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (DIGEST_TEST_POSTGRES_URL)")
def test_four_workers_ride_out_two_store_outages(
    engine: Engine, settings: Settings, db_url: str
) -> None:
    """A TCP proxy between four workers and PostgreSQL is cut for 12 s, twice, during a
    1,200-delivery send: every worker keeps running, every member gets exactly one message
    (outcomes kept in memory and recorded once the store is back, not resent), the ledger
    says sent for all 1,200, and no worker logs a traceback."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL run only")
    from sqlalchemy.engine import make_url

    now = datetime.now(UTC)
    seed(engine, 1200, now)
    assert plan(engine, settings, now, force=True).planned == 1200
    direct = make_url(db_url)
    handler = FaultHandler()
    with (
        tcp_proxy((direct.host or "127.0.0.1", direct.port or 5432)) as proxy,
        fault_server(handler) as (host, port),
    ):
        through = direct.set(host=proxy.host, port=proxy.port)
        env = _env(
            settings,
            host,
            port,
            DIGEST_DATABASE_URL=through.render_as_string(hide_password=False),
            DIGEST_RATE_PER_SECOND="20",
            DIGEST_SMTP_POOL_SIZE="2",
            DIGEST_CLAIM_SIZE="20",
            DIGEST_POLL_SECONDS="1",
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "digest", "worker", "--worker-id", f"w{i}"],
                env=env,
                cwd=PROJECT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(4)
        ]
        for threshold in (250, 700):
            wait_for(lambda t=threshold: handler.total >= t, 180)  # type: ignore[misc]
            proxy.cut()
            time.sleep(12)  # the outage (its length is the scenario, not a wait for a result)
            proxy.restore()
        wait_for(lambda: statuses(engine) == {"sent": 1200}, 300)
        assert all(w.poll() is None for w in workers), "every worker is still running"
        logs = []
        for w in workers:
            w.send_signal(signal.SIGTERM)
            _, err = w.communicate(timeout=60)
            assert w.returncode == 0, err.decode()
            logs.append(err.decode())
    assert handler.total == 1200 and set(handler.received.values()) == {1}
    with Session(engine) as session:
        assert set(session.exec(select(Delivery.message_id)).all()) == set(handler.received)
    for log in logs:
        assert "Traceback" not in log
        began = log.count("the store is not reachable")
        assert began == log.count("the store is reachable again after") and began <= 2
    assert sum(log.count("the store is not reachable") for log in logs) >= 4


def test_a_long_send_off_a_terminal_logs_its_progress(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Under systemd (stderr is no terminal, as under pytest) a send says how far it got
    every progress_log_seconds; 0 turns that off."""
    seed(engine, 6)
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        quiet = engine_settings(settings, host, port, progress_log_seconds=0.0)
        plan(engine, quiet, NOW)
        with caplog.at_level("INFO", logger="digest.send"):
            smtp_sender(engine, quiet.replace(claim_size=3)).run()
        assert not [r for r in caplog.records if r.getMessage().startswith("sending: ")]
        with Session(engine) as session:
            session.execute(update(Delivery).values(status="planned", lease_until=None))
            session.commit()
        chatty = quiet.replace(progress_log_seconds=0.001, claim_size=3)
        caplog.clear()
        with caplog.at_level("INFO", logger="digest.send"):
            smtp_sender(engine, chatty).run()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sending: ")]
    assert lines and lines[-1].endswith("messages/s)")
    assert any(line.startswith("sending: 6 sent, 0 to retry, 0 failed so far") for line in lines)
