"""Operators: ``/healthz`` for load balancers and ``/metrics`` in the Prometheus text format.

Metrics are read from the store on each scrape (the ledger is the queue), so every web process
reports the same numbers. The scheduler's last tick comes from its ``scheduler_state`` row, or
from :func:`record_tick` when a scheduler runs in this process.

Metrics are nobody's business but the operator's: they are served with a bearer token
(``DIGEST_METRICS_TOKEN``), or on their own listener (``metrics_listen``, for a monitoring
network), and otherwise not at all. Nor do they count pending members: anyone can add one
with the subscribe form, and the count moving by one would tell whether an address was
already known.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest import brake, heartbeat, ledger
from digest.db import ping, store_unreachable, unreachable_reason
from digest.feedback import store
from digest.members import count_by_status
from digest.models import ProcessState, SchedulerState
from digest.outages import Outage
from digest.scheduler import LEADER, stored_last_tick
from digest.web.context import WebContext, web_context

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Member statuses /metrics leaves out: a stranger moves the pending count (see above).
UNCOUNTED_MEMBER_STATUSES = frozenset({"pending"})
#: Send rate is averaged over this window.
RATE_WINDOW = timedelta(minutes=5)

#: The store's outages as this web process meets them (a page, /healthz, /metrics): one
#: WARNING when one begins, one INFO when /healthz or /metrics finds the store back.
STORE = Outage("the store", logging.getLogger("digest.web"), lambda: datetime.now(UTC))

_tick_lock = threading.Lock()
_last_tick: datetime | None = None


def record_tick(at: datetime) -> None:
    """Called by an in-process scheduler after each tick; the newest one wins."""
    global _last_tick
    with _tick_lock:
        if _last_tick is None or at > _last_tick:
            _last_tick = at


def last_tick(session: Session) -> datetime | None:
    """The newest tick known: this process's, or any scheduler's recorded in the store."""
    with _tick_lock:
        local = _last_tick
    known = [t for t in (local, stored_last_tick(session)) if t is not None]
    return max(known) if known else None


def _health(ctx: WebContext) -> tuple[bool, brake.BrakeState | None]:
    """Whether the store answers, and the brake's state (None when it could not be read)."""
    try:
        if not ping(ctx.engine):
            return False, None
    except Exception as exc:
        if store_unreachable(exc):
            STORE.failed(unreachable_reason(exc))
        return False, None
    STORE.recovered()
    try:
        with Session(ctx.engine) as session:
            return True, brake.state(session)
    except Exception:  # an older store without the table: the web app still serves
        return True, None


async def healthz(request: Request) -> Response:
    """200 while the web app can serve (members must always be able to unsubscribe, so a
    paused sender does not take it out of a load balancer); the body says when sending is
    paused and why, and ``X-Digest-Sending: paused`` lets monitoring alert on it."""
    ok, sending = await run_in_threadpool(_health, web_context(request))
    if not ok:
        return PlainTextResponse("database unreachable\n", status_code=503)
    headers = {"Cache-Control": "no-store", "X-Digest-Sending": "on"}
    body = "ok\n"
    if sending is not None and sending.paused:
        headers["X-Digest-Sending"] = "paused"
        reason = brake.describe(sending.reason or "paused")
        body += f"sending paused since {sending.paused_at:%Y-%m-%d %H:%M:%S} UTC: {reason}\n"
    return PlainTextResponse(body, headers=headers)


def _gauge(lines: list[str], name: str, help_text: str, kind: str = "gauge") -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


#: The last exposition read from the store, served (marked stale) while the store is away.
_last_good: tuple[datetime, list[str]] | None = None
_last_good_lock = threading.Lock()


def metrics_text(ctx: WebContext) -> str:
    """The exposition text: one short read transaction; while the store is away, the last
    text read (``digest_store_up 0``, ``digest_metrics_stale 1`` and its age) and no error."""
    global _last_good
    now = ctx.clock()
    try:
        lines = _store_lines(ctx, now)
    except Exception as exc:
        if not store_unreachable(exc):
            raise
        STORE.failed(unreachable_reason(exc))
        with _last_good_lock:
            known = _last_good
        lines = list(known[1]) if known else []
        _gauge(lines, "digest_store_up", "1 while the store answers.")
        lines.append("digest_store_up 0")
        _gauge(lines, "digest_metrics_stale", "1 when the store gauges are the last ones read.")
        lines.append(f"digest_metrics_stale {1 if known else 0}")
        if known:
            _gauge(lines, "digest_metrics_age_seconds", "Age of the store gauges served.")
            lines.append(f"digest_metrics_age_seconds {(now - known[0]).total_seconds():.3f}")
        return "\n".join(lines) + "\n"
    STORE.recovered()
    with _last_good_lock:
        _last_good = (now, list(lines))
    _gauge(lines, "digest_store_up", "1 while the store answers.")
    lines.append("digest_store_up 1")
    _gauge(lines, "digest_metrics_stale", "1 when the store gauges are the last ones read.")
    lines.append("digest_metrics_stale 0")
    return "\n".join(lines) + "\n"


def _store_lines(ctx: WebContext, now: datetime) -> list[str]:
    lines: list[str] = []
    with Session(ctx.engine) as session:
        by_status = ledger.counts_by_status(session)
        members = count_by_status(session)
        sent_recently = ledger.sent_between(session, now - RATE_WINDOW, now)
        ready = ledger.ready_count(session, now)
        tick = last_tick(session)
        sending = brake.state(session)
        brake_window = store.window_rates(
            session, ctx.settings.complaint_window, sending.resumed_at
        )
        week = store.recent_rates(session, now, 7)
        editions = store.edition_rates(session, since=now - timedelta(days=7))
        received = store.event_counts(session)
        procs = heartbeat.processes(session)
        leader = session.get(SchedulerState, LEADER)
    _gauge(lines, "digest_deliveries", "Deliveries in the ledger by status.")
    for status, count in by_status.items():
        lines.append(f'digest_deliveries{{status="{status}"}} {count}')
    _gauge(lines, "digest_members", "Members by status (pending ones are not counted).")
    for status, count in members.items():
        if status in UNCOUNTED_MEMBER_STATUSES:
            continue
        lines.append(f'digest_members{{status="{status}"}} {count}')
    queue = ledger.queue_depth(by_status)
    _gauge(lines, "digest_queue_depth", "Deliveries not yet finished (planned, retry, sending).")
    lines.append(f"digest_queue_depth {queue}")
    _gauge(lines, "digest_queue_ready", "Deliveries a worker could claim now.")
    lines.append(f"digest_queue_ready {ready}")
    window = int(RATE_WINDOW.total_seconds())
    _gauge(lines, "digest_send_rate_per_second", f"Messages sent per second, last {window} s.")
    lines.append(f"digest_send_rate_per_second {sent_recently / window:.6g}")
    _gauge(lines, "digest_scheduler_tick_known", "1 once a scheduler tick has been recorded.")
    lines.append(f"digest_scheduler_tick_known {1 if tick else 0}")
    if tick is not None:
        _gauge(lines, "digest_scheduler_last_tick_timestamp_seconds", "Last scheduler tick.")
        lines.append(f"digest_scheduler_last_tick_timestamp_seconds {tick.timestamp():.3f}")
    _gauge(lines, "digest_sending_paused", "1 while the brake has paused sending.")
    lines.append(f"digest_sending_paused {1 if sending.paused else 0}")
    _gauge(lines, "digest_bounce_rate", "Hard bounces per delivery, by window.")
    _gauge(lines, "digest_complaint_rate", "Complaints per delivery, by window.")
    for label, rates in (("brake", brake_window), ("7d", week)):
        lines.append(f'digest_bounce_rate{{window="{label}"}} {rates.bounce_rate:.6g}')
        lines.append(f'digest_complaint_rate{{window="{label}"}} {rates.complaint_rate:.6g}')
    _gauge(lines, "digest_edition_bounce_rate", "Hard bounces per delivery of recent editions.")
    _gauge(lines, "digest_edition_complaint_rate", "Complaints per delivery of recent editions.")
    for edition, rates in editions.items():
        name = _label(edition)
        lines.append(f'digest_edition_bounce_rate{{edition="{name}"}} {rates.bounce_rate:.6g}')
        lines.append(
            f'digest_edition_complaint_rate{{edition="{name}"}} {rates.complaint_rate:.6g}'
        )
    _gauge(lines, "digest_delivery_events_total", "Events received by kind.", "counter")
    for kind, count in received.items():
        lines.append(f'digest_delivery_events_total{{kind="{kind}"}} {count}')
    _scheduler_lines(lines, leader, now)
    _process_lines(lines, procs, now, ctx.settings.heartbeat_seconds)
    return lines


def _scheduler_lines(lines: list[str], leader: SchedulerState | None, now: datetime) -> None:
    active = bool(leader and leader.holder and leader.lease_until and leader.lease_until >= now)
    _gauge(lines, "digest_scheduler_active", "1 while a scheduler holds a live lease.")
    lines.append(f"digest_scheduler_active {1 if active else 0}")
    if active and leader is not None and leader.acquired_at is not None:
        age = (now - leader.acquired_at).total_seconds()
        _gauge(lines, "digest_scheduler_lease_holder_age_seconds", "How long it has led.")
        holder = _label(leader.holder or "")
        lines.append(f'digest_scheduler_lease_holder_age_seconds{{holder="{holder}"}} {age:.3f}')


def _process_lines(
    lines: list[str], procs: list[ProcessState], now: datetime, every: float
) -> None:
    """Every scheduler's and worker's heartbeat: up, state, last error, counters."""
    _gauge(lines, "digest_process_up", "1 while a process's heartbeat is recent.")
    for p in procs:
        up = 1 if heartbeat.alive(p, now, every) else 0
        lines.append(f'digest_process_up{{{_who(p)},state="{_label(p.state)}"}} {up}')
    _gauge(lines, "digest_process_heartbeat_timestamp_seconds", "A process's last heartbeat.")
    for p in procs:
        at = p.updated_at.timestamp()
        lines.append(f"digest_process_heartbeat_timestamp_seconds{{{_who(p)}}} {at:.3f}")
    _gauge(lines, "digest_process_last_error_timestamp_seconds", "When its last error was.")
    _gauge(lines, "digest_process_last_error_info", "A process's last error, as a label.")
    for p in procs:
        if p.last_error and p.last_error_at:
            at = p.last_error_at.timestamp()
            error = _label(p.last_error[:300])
            lines.append(f"digest_process_last_error_timestamp_seconds{{{_who(p)}}} {at:.3f}")
            lines.append(f'digest_process_last_error_info{{{_who(p)},error="{error}"}} 1')
    counted = [(p, p.counters or {}) for p in procs]
    _gauge(lines, "digest_deliveries_total", "Outcomes a process recorded.", "counter")
    for p, c in counted:
        for outcome, n in sorted((c.get("deliveries") or {}).items()):
            lines.append(f'digest_deliveries_total{{{_who(p)},outcome="{_label(outcome)}"}} {n}')
    _gauge(lines, "digest_smtp_errors_total", "SMTP failures a process met, by class.", "counter")
    for p, c in counted:
        for kind, n in sorted((c.get("smtp_errors") or {}).items()):
            lines.append(f'digest_smtp_errors_total{{{_who(p)},class="{_label(kind)}"}} {n}')
    _gauge(lines, "digest_store_reconnects_total", "Store outages a process rode out.", "counter")
    for p, c in counted:
        lines.append(f"digest_store_reconnects_total{{{_who(p)}}} {c.get('store_reconnects', 0)}")
    _gauge(lines, "digest_ingest_failures_total", "Items an ingest skipped, by source.", "counter")
    for p, c in counted:
        for source, n in sorted((c.get("ingest_failures") or {}).items()):
            lines.append(f'digest_ingest_failures_total{{{_who(p)},source="{_label(source)}"}} {n}')


def _who(p: ProcessState) -> str:
    return f'process="{_label(p.id)}",kind="{_label(p.kind)}"'


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _refusal(request: Request, ctx: WebContext) -> Response | None:
    """Why this request gets no metrics (a response saying so), or None."""
    token = ctx.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            hashlib.sha256(given.strip().encode()).digest(),
            hashlib.sha256(token.encode()).digest(),
        ):
            return None
        return PlainTextResponse(
            "metrics need the bearer token (DIGEST_METRICS_TOKEN)\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if request.app.state.metrics_listener:
        return None
    if ctx.settings.metrics_listen:
        return PlainTextResponse("not found\n", status_code=404)
    return PlainTextResponse(
        "metrics are off: set DIGEST_METRICS_TOKEN (scrape with a bearer token) or "
        "metrics_listen (a host:port of their own)\n",
        status_code=403,
    )


async def metrics(request: Request) -> Response:
    ctx = web_context(request)
    refused = _refusal(request, ctx)
    if refused is not None:
        return refused
    body = await run_in_threadpool(metrics_text, ctx)
    return PlainTextResponse(
        body, media_type=PROMETHEUS_TYPE, headers={"Cache-Control": "no-store"}
    )


ROUTES = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/metrics", metrics, methods=["GET"]),
]
