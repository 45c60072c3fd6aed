"""``digest worker``: a sending process; run any number of them against one store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click

from digest import notify
from digest.cli.common import (
    App,
    BadInput,
    WorkFailed,
    pass_app,
    require_postal_address,
    say,
    stop_on_signals,
)
from digest.cli.held import Holding, dead_holders_failure, settle_held, wait_held_option
from digest.clock import system_clock
from digest.db import store_unreachable, unreachable_reason
from digest.editions import Editions
from digest.heartbeat import IDLE, PAUSED, SENDING, Beat, Heartbeat, counters
from digest.mailer import make_transport
from digest.outages import STOPPING, Outage
from digest.send import Sender, SendReport, worker_name

log = logging.getLogger("digest.worker")


@click.command("worker")
@click.option(
    "--once",
    is_flag=True,
    help="Send what is ready, then exit (1 if any failed or wait for a retry).",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    help="Most SMTP connections (overrides smtp_pool_size).",
)
@click.option("--worker-id", help="Name in the ledger's claims [host:pid].")
@wait_held_option
@pass_app
def worker_command(
    app: App, once: bool, pool_size: int | None, worker_id: str | None, wait_held: bool
) -> None:
    """Send planned deliveries until stopped.

    SIGTERM and SIGINT finish the messages in flight, release unsent claims and exit 0.
    With --once: exit 1 if any failed, wait for a retry, or are held by a process that is
    no longer running (see --wait-held).
    """
    settings = app.settings.replace(smtp_pool_size=pool_size) if pool_size else app.settings
    try:
        editions = Editions(settings)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    require_postal_address(app, settings)
    name = worker_id or worker_name()
    sender = Sender(
        app.engine,
        settings,
        editions,
        lambda: make_transport(settings),
        system_clock,
        worker_id=name,
        smtp_outage=Outage("the SMTP server", log, system_clock, then=STOPPING) if once else None,
    )
    log.info("worker %s started with up to %d connections", name, settings.smtp_pool_size)
    paused: list[tuple[str, datetime]] = []  # why sending is paused (not an outage), if it is

    def describe() -> Beat:
        state = PAUSED if paused else SENDING if sender.activity else IDLE
        detail = paused[-1][0] if paused else sender.activity
        error = paused[-1] if paused else None
        return Beat(state, detail, counters(sender.counts, sender.store), error)

    beats = Heartbeat(
        app.engine,
        "worker",
        system_clock,
        settings.heartbeat_seconds,
        describe,
        outages=(sender.store, sender.smtp),
        process_id=name,
    )
    beats.start()
    notify.ready(f"worker {name}")
    totals = SendReport()
    with stop_on_signals("finishing messages in flight") as stop, _stopping(beats):
        while not stop.is_set():
            try:
                report = sender.run(should_stop=stop.is_set)
            except Exception as exc:
                if once or not store_unreachable(exc):
                    raise
                # the sender waits out an outage itself; this is one it was stopped in, or
                # one that began between its runs: said once (WARNING), then waited out
                sender.store.failed(unreachable_reason(exc))
                stop.wait(settings.poll_seconds)
                continue
            totals.add(report)
            paused[:] = (
                []
                if not report.paused_reason or report.smtp_outage
                else [(report.paused_reason, system_clock())]
            )
            beats.changed()
            if report.paused_reason:
                if once:
                    raise WorkFailed(f"sending paused: {report.paused_reason}")
                if not report.smtp_outage:  # an outage says so once, when it begins
                    log.error("pausing %ss: %s", settings.pause_seconds, report.paused_reason)
                stop.wait(settings.pause_seconds)
                sender.breaker.reset()
                continue
            if once:
                break
            if report.claimed == 0:
                stop.wait(settings.poll_seconds)
        dead: list[Holding] = []
        if once:
            more, dead = settle_held(
                app.engine,
                system_clock,
                name,
                stop,
                lambda: sender.run(should_stop=stop.is_set),
                wait=wait_held,
            )
            totals.add(more)
            if more.paused_reason:
                raise WorkFailed(f"sending paused: {more.paused_reason}")
    say(
        f"worker {name}: sent {totals.sent}, retry {totals.retry}, failed {totals.failed}",
        worker=name,
        sent=totals.sent,
        retry=totals.retry,
        failed=totals.failed,
    )
    if once and (totals.retry or totals.failed):  # as `digest run`: the work did not all go
        raise WorkFailed(f"{totals.failed} deliveries failed, {totals.retry} to retry later")
    if dead:
        raise WorkFailed(dead_holders_failure(dead))


@contextmanager
def _stopping(beats: Heartbeat) -> Iterator[None]:
    """The heartbeat runs while the worker does; its last beat says it stopped."""
    try:
        yield
    finally:
        beats.stop()


COMMANDS = [worker_command]
