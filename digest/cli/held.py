"""After ``digest run`` or ``worker --once``: deliveries still held by another worker.

A process killed with ``kill -9`` leaves its claims ``sending`` until their lease runs out;
a run that ends meanwhile has not sent them, and a daily cron run would skip those members
for the day while saying all is well. So the run names every holder (how many, until when,
whether that process still runs) and fails (exit 1) while a dead process holds any, or, with
``--wait-held``, waits for those leases to run out and sends the deliveries itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import click
from sqlalchemy import Engine
from sqlmodel import Session

from digest import ledger
from digest.holders import ALIVE, DEAD, holder_state
from digest.send import SendReport

_STATES = {
    ALIVE: "still running on this host: it will send them",
    DEAD: "no longer running on this host",
}
_ON_ANOTHER_HOST = "not a process of this host: not checked"

wait_held_option = click.option(
    "--wait-held",
    is_flag=True,
    help="If a process that is no longer running holds deliveries, wait for their leases "
    "to run out and send them (without it: report them and exit 1).",
)


@dataclass(frozen=True)
class Holding:
    held: ledger.Held
    state: str

    def line(self) -> str:
        h = self.held
        words = _STATES.get(self.state, _ON_ANOTHER_HOST)
        return f"{h.count} deliveries held by {h.worker_id} until {h.until.isoformat()} ({words})"


def holdings(
    engine: Engine, now: datetime, own: str, subscriber_ids: Sequence[int] | None = None
) -> list[Holding]:
    """Who else holds deliveries at ``now`` (``own``: this process's worker id)."""
    with Session(engine) as session:
        held = ledger.held_claims(session, now, subscriber_ids)
    return [
        Holding(h, holder_state(h.worker_id))
        for h in held
        if h.worker_id != own and not h.worker_id.startswith(own[:190] + "/")
    ]


def settle_held(
    engine: Engine,
    clock: Callable[[], datetime],
    own: str,
    stop: threading.Event,
    send_more: Callable[[], SendReport],
    *,
    wait: bool,
    subscriber_ids: Sequence[int] | None = None,
) -> tuple[SendReport, list[Holding]]:
    """Report the holders; with ``wait``, wait out dead holders' leases and ``send_more``.

    Returns what the extra sending did, and the dead holdings left (none after waiting,
    unless ``stop`` was set).
    """
    extra = SendReport()
    while True:
        found = holdings(engine, clock(), own, subscriber_ids)
        for holding in found:
            click.echo(f"held: {holding.line()}", err=True)
        dead = [h for h in found if h.state == DEAD]
        if not dead or not wait or stop.is_set():
            return extra, dead
        until = max(h.held.until for h in dead)
        seconds = max(0.0, (until - clock()).total_seconds()) + 0.5
        click.echo(
            f"waiting {seconds:.0f} s for the leases of {sum(h.held.count for h in dead)} "
            f"deliveries to run out (until {until.isoformat()}), then sending them",
            err=True,
        )
        if stop.wait(seconds):
            return extra, dead
        more = send_more()
        extra.add(more)
        extra.errors.extend(more.errors)
        if more.paused_reason:
            extra.paused_reason = more.paused_reason


def dead_holders_failure(dead: list[Holding]) -> str:
    """The exit-1 message while dead processes hold deliveries."""
    count = sum(h.held.count for h in dead)
    until = max(h.held.until for h in dead)
    names = ", ".join(h.held.worker_id for h in dead)
    return (
        f"{count} deliveries are held by a process that is no longer running ({names}); "
        f"they can be sent after {until.isoformat()}: run again then, or with --wait-held"
    )
