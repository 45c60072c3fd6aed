"""The scheduler: editions at each member's hour across DST, stale guard, one active process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import Engine
from sqlmodel import Session, select

from digest.db import session_scope
from digest.ingest import ArticleRecord, upsert_articles
from digest.members import MemberRecord, add_member
from digest.models import Article, Delivery, SchedulerState, Subscriber
from digest.plan import plan
from digest.scheduler import JOB_TABLE, Jobs, acquire_leadership, release_leadership, status
from digest.settings import Settings
from tests.conftest import CLI, PROJECT, TEST_SECRET
from tests.test_schedule import ZONES

# ------------------------------------------------------------------ with the store

DAY = datetime(2026, 11, 24, tzinfo=UTC)


def seed_member_and_article(engine: Engine, seen: datetime, slug: str = "a") -> None:
    with session_scope(engine) as session:
        upsert_articles(
            session,
            [
                ArticleRecord(
                    url=f"https://archive.example.org/{slug}",
                    title=f"Article {slug}",
                    published_at=seen - timedelta(hours=1),
                    key_points=("Point.",),
                    topics=("Space",),
                )
            ],
            seen,
        )


def test_two_days_down_sends_nothing_stale_and_records_it(
    engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        add_member(
            session,
            MemberRecord("ada@example.org", "Ada", ("Space",), timezone="UTC", send_hour=7),
            DAY - timedelta(days=5),
        )
    seed_member_and_article(engine, DAY + timedelta(hours=5), "first")
    assert plan(engine, settings, DAY + timedelta(hours=7, minutes=5)).planned == 1
    # Down from 08:00 on the 24th; an article arrives on the 25th; back at 03:00 on the 26th.
    seed_member_and_article(engine, DAY + timedelta(days=1, hours=5), "second")
    report = plan(engine, settings, DAY + timedelta(days=2, hours=3))
    assert report.planned == 0 and report.skipped_stale == 1
    with Session(engine) as session:
        stale = session.exec(select(Delivery).where(Delivery.edition == "daily:2026-11-25")).one()
    assert stale.status == "skipped" and stale.error.startswith("stale")
    # The next edition, at its hour, carries the article the stale one would have had.
    report = plan(engine, settings, DAY + timedelta(days=2, hours=7, minutes=1))
    assert report.planned == 1
    with Session(engine) as session:
        today = session.exec(select(Delivery).where(Delivery.edition == "daily:2026-11-26")).one()
    assert len(today.article_ids) == 1


def test_leadership_lease(engine: Engine) -> None:
    lease = timedelta(seconds=30)
    assert acquire_leadership(engine, "host-a:1", DAY, lease)
    assert not acquire_leadership(engine, "host-b:2", DAY + timedelta(seconds=10), lease)
    assert acquire_leadership(engine, "host-a:1", DAY + timedelta(seconds=20), lease)  # renew
    assert not acquire_leadership(engine, "host-b:2", DAY + timedelta(seconds=45), lease)
    # a dies: after its lease runs out, b takes over, and a cannot come back by renewing.
    assert acquire_leadership(engine, "host-b:2", DAY + timedelta(seconds=51), lease)
    assert not acquire_leadership(engine, "host-a:1", DAY + timedelta(seconds=52), lease)
    info = status(engine, DAY + timedelta(seconds=53))
    assert info["active"] and (info["host"], info["pid"]) == ("host-b", 2)
    release_leadership(engine, "host-b:2", DAY + timedelta(seconds=54))
    assert acquire_leadership(engine, "host-a:1", DAY + timedelta(seconds=55), lease)


def test_jobs_record_runs_for_status(engine: Engine, settings: Settings) -> None:
    jobs = Jobs(engine, settings, [], clock=lambda: DAY + timedelta(hours=8))
    assert jobs.run("plan")["members"] == 0
    jobs.run("plan")
    info = status(engine, DAY + timedelta(hours=8))
    assert info["runs"]["plan"]["runs"] == 2
    assert info["last_tick_at"].startswith("2026-11-24T08:00")


def test_the_send_job_waits_out_an_smtp_outage(engine: Engine, settings: Settings) -> None:
    """The send job finds the SMTP server away: no delivery spends an attempt, nothing is
    raised (no traceback), the run's error is recorded and the heartbeat says why; the next
    tick, with the server back, sends every one."""
    from digest.plan import plan
    from tests.conftest import free_port
    from tests.smtp_faults import FaultHandler, fault_server
    from tests.test_send import seed as seed_members

    now = datetime.now(UTC)
    seed_members(engine, 5, now)
    away = settings.replace(smtp_port=free_port(), smtp_timeout=2.0)
    assert plan(engine, away, now, force=True).planned == 5
    jobs = Jobs(engine, away, [], clock=lambda: now)
    assert jobs.run("send") == {}
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert {(d.status, d.attempts) for d in rows} == {("planned", 0)}
    assert jobs.smtp.active
    info = status(engine, now)
    assert info["runs"]["send"]["runs"] == 1
    assert "the SMTP server is unavailable" in (info["last_error"] or "")
    assert jobs.describe(leading=True).counters["smtp_errors"] == {"connection": 1}
    handler = FaultHandler()
    with fault_server(handler) as (host, port):
        jobs.reconfigure(away.replace(smtp_host=host, smtp_port=port), [])
        assert jobs.run("send")["sent"] == 5
    assert not jobs.smtp.active and handler.total == 5


# ------------------------------------------------------------------ processes


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=settings.database_url,
        DIGEST_SECRET_KEY=TEST_SECRET,
        DIGEST_TRANSPORT="outbox",
        DIGEST_OUTBOX_DIR=settings.outbox_dir,
        DIGEST_SCHEDULER_LEASE_SECONDS="2",
        **extra,
    )
    return env


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait(predicate: callable, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    """What a scheduler process said, for a failing assertion (stops it first)."""
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    return err.decode(errors="replace")[-3000:]


def _state(engine: Engine) -> SchedulerState | None:
    with Session(engine) as session:
        return session.get(SchedulerState, "main")


def _plan_runs(engine: Engine) -> int:
    state = _state(engine)
    if state is None or not state.last_tick_report:
        return 0
    return int(json.loads(state.last_tick_report).get("plan", {}).get("runs", 0))


def test_standby_takes_over_when_the_active_scheduler_dies(
    engine: Engine, settings: Settings
) -> None:
    env = _env(settings)
    first = _start(env, "scheduler", "--tick", "1")
    try:
        assert _wait(lambda: (s := _state(engine)) is not None and s.pid == first.pid)
        second = _start(env, "scheduler", "--tick", "1")
        try:
            time.sleep(3)  # longer than the lease: the standby must still wait
            assert _state(engine).pid == first.pid
            runs = _plan_runs(engine)
            first.send_signal(signal.SIGKILL)
            first.wait()
            assert _wait(lambda: _state(engine).pid == second.pid, timeout=10)
            assert _wait(lambda: _plan_runs(engine) > runs, timeout=10)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert _state(engine).holder is None  # a clean stop gives the lease back


def test_restart_after_an_hour_down_catches_up_once(engine: Engine, settings: Settings) -> None:
    env = _env(settings)
    first = _start(env, "scheduler", "--tick", "600")
    assert _wait(lambda: _plan_runs(engine) == 1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    # An hour passes: six ten-minute plan ticks are missed.
    store = SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)
    for job in store.get_all_jobs():
        job.next_run_time = job.next_run_time - timedelta(hours=1)
        store.update_job(job)
    second = _start(env, "scheduler", "--tick", "600")
    try:
        assert _wait(lambda: _plan_runs(engine) >= 2, timeout=45)  # slow under a loaded CI
        time.sleep(2)
        assert _plan_runs(engine) == 2, "the missed ticks ran once, not six times"
        nxt = status(engine, datetime.now(UTC))["jobs"]["plan"]
        assert datetime.fromisoformat(nxt) > datetime.now(UTC)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0


def test_sigterm_finishes_in_flight_and_leaves_nothing_sending(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    from tests.test_send import seed

    now = datetime.now(UTC)
    seed(engine, 40, now)
    env = _env(settings, DIGEST_RATE_PER_SECOND="8", DIGEST_SMTP_POOL_SIZE="2")
    # Plan with the real clock, whatever the hour, so the service has work in flight.
    assert plan(engine, settings, now, force=True).planned == 40
    proc = _start(env, "scheduler", "--tick", "1")
    with Session(engine) as session:
        assert _wait(lambda: len(list((tmp_path / "outbox").glob("*.eml"))) >= 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    with Session(engine) as session:
        statuses = {d.status for d in session.exec(select(Delivery)).all()}
    assert "sending" not in statuses
    assert statuses <= {"sent", "planned"} and "planned" in statuses


def test_serve_answers_sigterm_with_exit_0_and_nothing_sending(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    import urllib.request

    from tests.conftest import free_port
    from tests.test_send import seed

    now = datetime.now(UTC)
    seed(engine, 40, now)
    assert plan(engine, settings, now, force=True).planned == 40
    port = free_port()
    env = _env(settings, DIGEST_RATE_PER_SECOND="8", DIGEST_WEB_PORT=str(port))
    proc = _start(env, "serve", "--tick", "1")
    try:
        assert _wait(lambda: len(list((tmp_path / "outbox").glob("*.eml"))) >= 3)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        assert _wait(healthy, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    with Session(engine) as session:
        statuses = {d.status for d in session.exec(select(Delivery)).all()}
    assert "sending" not in statuses and "planned" in statuses
    assert _state(engine).holder is None


def test_ingest_job_reads_configured_sources(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    from digest.scheduler import sources_from_config
    from digest.settings import config_sources
    from tests.conftest import DATA

    config = tmp_path / "digest.toml"
    config.write_text(
        f'[[sources]]\npath = "{DATA / "sample-article.md"}"\n[[sources]]\npath = "missing"\n'
    )
    sources = sources_from_config(config_sources(config), tmp_path)
    assert [s.location for s in sources][1] == str(tmp_path / "missing")
    jobs = Jobs(engine, settings, sources, clock=lambda: DAY)
    summary = jobs.run("ingest")
    assert summary["sources"] == 2 and summary["errors"] == 1  # a bad source is skipped, logged
    # ... and counted against it, for the heartbeat and /metrics
    counted = jobs.describe(leading=True).counters["ingest_failures"]
    assert counted == {str(tmp_path / "missing"): 1}
    again = Jobs(engine, settings, sources, clock=lambda: DAY + timedelta(hours=1)).run("ingest")
    assert "1 unchanged" in again["counts"]
    with pytest.raises(ValueError, match="sources"):
        sources_from_config([{"name": "nothing"}], tmp_path)


def test_ingest_job_reads_the_feeds_editors_added(engine: Engine, settings: Settings) -> None:
    from digest.db import session_scope
    from digest.models import FeedSource
    from tests.conftest import DATA

    with session_scope(engine) as session:  # a path here; the newsroom adds feed URLs
        session.add(FeedSource(url=str(DATA / "sample-article.json"), added_at=DAY))
    summary = Jobs(engine, settings, [], clock=lambda: DAY).run("ingest")
    assert summary["sources"] == 1 and "1 new" in summary["counts"]


def test_ingest_job_keeps_the_first_of_a_repeated_item_and_warns(
    engine: Engine, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.scheduler import sources_from_config

    def row(n: int, title: str) -> str:
        return json.dumps(
            {
                "url": f"https://feed.example/{n}",
                "title": title,
                "published_at": "2026-03-01T08:00:00Z",
                "key_points": ["A point."],
            }
        )

    feed = tmp_path / "feed.jsonl"
    feed.write_text(f"{row(1, 'First')}\n{row(2, 'Two')}\n{row(1, 'Repeat')}\n")
    other = tmp_path / "other.jsonl"
    other.write_text(row(3, "Three") + "\n")
    sources = sources_from_config([{"path": str(feed)}, {"path": str(other)}], tmp_path)
    jobs = Jobs(engine, settings, sources, clock=lambda: DAY)
    with caplog.at_level("WARNING", logger="digest.scheduler"):
        summary = jobs.run("ingest")
    assert summary["errors"] == 1 and summary["counts"].startswith("3 new")
    assert jobs.counts == {f"ingest_failures:{feed}": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"ingest: skipped {feed}: line 3: field 'url': https://feed.example/1 "
        "is a duplicate of line 1"
    ]
    with Session(engine) as session:
        titles = sorted(a.title for a in session.exec(select(Article)).all())
    assert titles == ["First", "Three", "Two"]


def test_sighup_reloads_the_configuration(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "digest.toml"
    config.write_text("tick_seconds = 60.0\n")
    env = _env(settings, DIGEST_CONFIG=str(config))
    proc = _start(env, "scheduler")
    try:
        assert _wait(lambda: _plan_runs(engine) >= 1, timeout=60), _stderr(proc)
        jobs = lambda: status(engine, datetime.now(UTC))["jobs"]  # noqa: E731
        first_next = datetime.fromisoformat(jobs()["plan"])
        config.write_text("tick_seconds = 3600.0\n")
        proc.send_signal(signal.SIGHUP)
        assert _wait(
            lambda: datetime.fromisoformat(jobs()["plan"]) - first_next > timedelta(minutes=30)
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_status_command_prints_the_state(cli: CLI, engine: Engine, settings: Settings) -> None:
    jobs = Jobs(engine, settings, [], clock=lambda: DAY + timedelta(hours=8))
    jobs.run("plan")
    acquire_leadership(engine, "box:4242", datetime.now(UTC), timedelta(minutes=5))
    out = cli("status")
    assert out.exit_code == 0
    assert "active scheduler: box pid 4242" in out.stdout
    assert "queue: 0 planned" in out.stdout
    assert "last tick: 2026-11-24T08:00" in out.stdout
    info = json.loads(cli("status", "--json").stdout)
    assert info["pid"] == 4242 and info["runs"]["plan"]["runs"] == 1


def test_planner_across_dst_changes_one_edition_per_local_day(
    engine: Engine, settings: Settings, db_url: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("one backend is enough for a long tick loop")
    start = datetime(2026, 3, 26, tzinfo=UTC)  # London changes on 29 March, NZ on 5 April
    with session_scope(engine) as session:
        for i, zone in enumerate(ZONES):
            add_member(
                session,
                MemberRecord(f"m{i}@example.org", f"M{i}", ("Space",), timezone=zone, send_hour=7),
                start - timedelta(days=1),
            )
    now, step = start, timedelta(minutes=30)
    while now < start + timedelta(days=12):
        if now.minute == 0 and now.hour % 6 == 0:
            seed_member_and_article(engine, now, f"a{now:%m%d%H}")
        plan(engine, settings, now)
        now += step
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
        emails = {m.id: m.email for m in session.exec(select(Subscriber))}
    per_member: dict[str, list[Delivery]] = defaultdict(list)
    for d in rows:
        per_member[emails[d.subscriber_id]].append(d)
    for i, zone in enumerate(ZONES):
        tz = ZoneInfo(zone)
        everything = per_member[f"m{i}@example.org"]
        editions = [d for d in everything if d.due_at >= start]  # not the start-up's backlog
        keys = [d.edition for d in everything]
        assert len(keys) == len(set(keys))
        for d in editions:
            assert d.status == "planned"
            local = d.planned_at.astimezone(tz)
            assert local.hour >= 7 and d.planned_at - d.due_at < step
            assert d.edition == f"daily:{local.date().isoformat()}"
        assert len(editions) >= 11


def test_concurrent_job_reports_lose_no_run(engine: Engine) -> None:
    """Jobs finish at once and each rewrites the shared report: every run is still counted."""
    import threading

    from digest.models import SchedulerState
    from digest.scheduler import LEADER, record_run

    with session_scope(engine) as session:
        session.add(SchedulerState(name=LEADER))
    now = datetime.now(UTC)

    def work(job: str) -> None:
        for _ in range(15):
            record_run(engine, job, {"ok": True}, now)

    threads = [threading.Thread(target=work, args=(job,)) for job in ("plan", "send") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = json.loads(_state(engine).last_tick_report)  # type: ignore[union-attr]
    assert report["plan"]["runs"] == 45 and report["send"]["runs"] == 45


def test_an_article_fetched_while_a_plan_runs_reaches_the_next_edition(
    engine: Engine, settings: Settings
) -> None:
    """The ingest job stamps first-seen when it writes, after a slow fetch, not when the fetch
    began: a plan run meanwhile has closed the member's window after the stamp would have
    been, and the article would have fallen outside every window."""
    import http.server
    import threading

    from digest.models import Article
    from digest.scheduler import Source
    from tests.conftest import free_port
    from tests.test_send import NOW, seed

    feed = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<link>https://archive.example.org/</link><description>d</description><item>"
        b"<title>Late probe news</title><link>https://archive.example.org/late</link>"
        b"<category>Space</category><pubDate>Tue, 24 Nov 2026 06:00:00 GMT</pubDate>"
        b"<description>A late article.</description></item></channel></rss>"
    )

    class FarFeed(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(1.5)
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.wfile.write(feed)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), FarFeed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seed(engine, 1)  # a daily Space member, due at 07:00 UTC, and one Space article
    start = time.monotonic()
    clock = lambda: NOW + timedelta(seconds=time.monotonic() - start)  # noqa: E731
    url = f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    local = settings.replace(allow_private_feed_hosts=True)  # the feed is on loopback
    jobs = Jobs(engine, local, [Source(url)], clock=clock)
    try:
        ingest = threading.Thread(target=jobs.job_ingest)
        ingest.start()
        time.sleep(0.5)
        assert jobs.job_plan()["planned"] == 1  # today's edition, while the feed is fetched
        ingest.join()
    finally:
        server.shutdown()
    plan(engine, settings, NOW + timedelta(days=1))
    with Session(engine) as session:
        late = session.exec(select(Article).where(Article.title == "Late probe news")).one()
        editions = {d.edition: d.article_ids for d in session.exec(select(Delivery))}
    assert late.id not in editions["daily:2026-11-24"]
    assert editions["daily:2026-11-25"] == [late.id]


def test_serve_exits_1_when_its_web_app_cannot_start(engine: Engine, settings: Settings) -> None:
    """A taken port is not half a service: systemd's Restart=on-failure must see it fail."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "digest", "serve", "--port", str(port), "--tick", "1"],
            env=_env(settings),
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"the web app could not start on 127.0.0.1:{port}" in done.stderr
    assert "web app on http" not in done.stderr


def test_the_scheduler_waits_out_a_store_outage(
    settings: Settings, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store goes away under an active scheduler (a TCP proxy in front of PostgreSQL,
    cut): the service keeps running and keeps its jobs, says so once (a WARNING, no
    traceback), and once the store is back says how long it lasted and still leads."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL run only (a TCP proxy in front of the server)")
    import threading

    from sqlalchemy.engine import make_url

    from digest import heartbeat
    from digest.db import create_schema, make_engine
    from digest.scheduler import Service
    from tests.tcp_proxy import tcp_proxy

    direct = make_url(db_url)
    with tcp_proxy((direct.host or "127.0.0.1", direct.port or 5432)) as proxy:
        through = direct.set(host=proxy.host, port=proxy.port)
        engine = make_engine(through.render_as_string(hide_password=False))
        create_schema(engine)
        service = Service(
            engine, settings.replace(scheduler_lease_seconds=3), [], tick_seconds=60, holder="h:1"
        )
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(service.run()))
        with caplog.at_level("INFO"):
            runner.start()
            wait_until(lambda: service.leading, 30)
            time.sleep(0.5)  # the jobs' first runs are under way when the store goes
            proxy.cut()
            wait_until(lambda: service.jobs.store.active, 30)
            assert service.leading and runner.is_alive()
            proxy.restore()
            wait_until(lambda: not service.jobs.store.active, 60)
            assert service.leading
            # APScheduler's loop outlived the outage (its job store rode it out)
            assert service.scheduler is not None and service.scheduler._thread.is_alive()  # type: ignore[attr-defined]
            service.stop()
            runner.join(timeout=60)
        engine.dispose()
    assert codes == [0]
    # its heartbeat row, written once the store was back, names the outage
    direct_engine = make_engine(db_url)
    with Session(direct_engine) as session:
        (row,) = [p for p in heartbeat.processes(session) if p.id == "h:1"]
    direct_engine.dispose()
    assert row.kind == "scheduler" and row.state == "stopped"
    assert (row.last_error or "").startswith("the store: ")
    assert row.counters["store_reconnects"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the store is not reachable" in m for m in messages) == 1
    assert sum("the store is reachable again after" in m for m in messages) == 1
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
