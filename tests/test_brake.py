"""The brake: complaints (or hard bounces) past their limits pause sending; workers, runs and
the scheduler stop claiming; status and /healthz say why; the pause survives a restart;
``digest sending resume`` lifts it. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from digest import brake, ledger
from digest.clock import fixed_clock
from digest.db import make_engine, session_scope
from digest.feedback import store
from digest.feedback.intake import Intake
from digest.plan import plan
from digest.settings import Settings
from digest.web import create_app
from tests.conftest import CLI, SMTPServer
from tests.returned_mail import (
    BOUNCE_ADDRESS,
    NOW,
    Original,
    arf,
    feedback_settings,
    seed_members,
    send_digests,
)


def complain(engine: Engine, fs: Settings, original: Original) -> None:
    Intake(engine, fs, lambda: datetime.now(UTC)).receive_mail(arf(original), "smtp")


def planned(engine: Engine) -> int:
    with Session(engine) as session:
        return ledger.counts_by_status(session)[ledger.PLANNED]


def test_complaints_pause_workers_until_resumed(
    cli: CLI, engine: Engine, db_url: str, settings: Settings, smtp_server: SMTPServer
) -> None:
    fs = feedback_settings(settings)
    cli.env.update({"DIGEST_BOUNCE_ADDRESS": BOUNCE_ADDRESS, "DIGEST_INBOUND_DIR": fs.inbound_dir})
    sent = send_digests(engine, fs, smtp_server, 6)
    seed_members(engine, 6, NOW + timedelta(days=1), day=1)  # tomorrow's article
    plan(engine, fs, NOW + timedelta(days=1))  # tomorrow's editions wait in the queue
    assert planned(engine) == 6
    complain(engine, fs, Original.of(sent[0]))  # 1 complaint in 6 deliveries: 16.7% > 0.3%
    before = len(smtp_server.messages)

    worker = cli("worker", "--once")
    assert worker.exit_code == 1
    assert "sending paused: the brake is on: complaint rate 16.67%" in worker.output
    assert "digest sending resume" in worker.output
    assert len(smtp_server.messages) == before and planned(engine) == 6  # all still wait
    run = cli("run", "--now", (NOW + timedelta(days=1, hours=1)).isoformat())
    assert run.exit_code == 1 and "the brake is on" in run.output
    assert len(smtp_server.messages) == before

    status = cli("status")
    assert "sending: PAUSED since" in status.output and "complaint rate 16.67%" in status.output
    app = create_app(fs.replace(metrics_token="scrape"), engine)
    with TestClient(app, base_url="https://news.example.org") as client:
        health = client.get("/healthz")
        metrics = client.get("/metrics", headers={"Authorization": "Bearer scrape"}).text
    assert health.status_code == 200 and health.headers["x-digest-sending"] == "paused"
    assert "sending paused since" in health.text and "complaint rate 16.67%" in health.text
    assert "digest_sending_paused 1" in metrics
    assert 'digest_complaint_rate{window="brake"} 0.166667' in metrics

    # a restart (a new process, a new engine) finds the pause where it was left
    fresh = make_engine(db_url)
    with Session(fresh) as session:
        assert brake.state(session).paused
    fresh.dispose()

    resumed = cli("sending", "resume")
    assert resumed.exit_code == 0 and "sending resumed" in resumed.output
    again = cli("worker", "--once")
    assert again.exit_code == 1  # the complainer's planned delivery fails: not sent to them
    assert "paused" not in again.output and "sent 5, retry 0, failed 1" in again.output
    assert len(smtp_server.messages) == before + 5
    with Session(engine) as session:
        assert not brake.state(session).paused  # the complaint it has seen does not re-engage


def test_a_new_complaint_after_resume_engages_it_again(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    fs = feedback_settings(settings)
    sent = send_digests(engine, fs, smtp_server, 4)
    complain(engine, fs, Original.of(sent[0]))
    with session_scope(engine) as session:
        brake.resume(session, datetime.now(UTC), "test")
    assert brake.evaluate(engine, fs, datetime.now(UTC)).paused is False
    complain(engine, fs, Original.of(sent[1]))
    with Session(engine) as session:
        state = brake.state(session)
    assert state.paused and "1 of the last 4" in (state.reason or "")


def test_hard_bounces_in_the_session_engage_it_once_there_are_enough(
    engine: Engine, settings: Settings, smtp_server: SMTPServer
) -> None:
    for i in range(3):
        smtp_server.handler.faults[f"m00{i}@example.org"] = "550 5.1.1 no such user"
    fs = feedback_settings(settings, bounce_rate_min_deliveries=10)
    send_digests(engine, fs, smtp_server, 9)
    checker = brake.Brake(engine, fs, fixed_clock(NOW))
    assert checker.reason() is None  # 3 of 9: too few deliveries to judge
    send_digests(engine, fs, smtp_server, 9, day=1)
    with Session(engine) as session:
        rates = store.window_rates(session, fs.complaint_window)
    assert (rates.attempted, rates.hard_bounces) == (9 + 6, 3)  # bounced members get no more
    reason = brake.Brake(engine, fs, fixed_clock(NOW)).reason()
    assert reason and "hard-bounce rate 20.00% (3 of the last 15" in reason


def test_pause_by_hand(cli: CLI, engine: Engine) -> None:
    result = cli("sending", "pause", "--reason", "checking the DNS")
    assert result.exit_code == 0
    assert "paused by an operator: checking the DNS" in cli("sending", "status").output
    assert cli("worker", "--once").exit_code == 1
    assert "sending resumed" in cli("sending", "resume").output
    assert cli("sending", "status").output.startswith("sending is on")
