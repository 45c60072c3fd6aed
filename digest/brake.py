"""The brake: sending pauses itself when complaints or hard bounces rise past the limits.

Gmail, Yahoo and Outlook.com reject bulk mail from senders whose complaint rate stays above
0.3%; a list full of dead addresses ruins a sender's reputation the same way. So when, over
the last ``complaint_window`` deliveries, the complaint rate passes ``complaint_rate_limit``
or the hard-bounce rate passes ``bounce_rate_limit``, the brake engages: a row in the store
(``sending_state``) says sending is paused and why, every worker and the scheduler stop
claiming deliveries, and ``digest status`` and ``/healthz`` say so, until an operator runs
``digest sending resume``. The pause survives restarts because it lives in the store.

Every complaint counts, however small the list: a person said "spam". Hard bounces count
once the window holds ``bounce_rate_min_deliveries`` deliveries, so two typos among a
twenty-member list do not stop it. After a resume only the bounces and complaints that
arrive later count, so the brake does not engage again at once on the evidence the operator
has just looked at.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from digest.db import session_scope
from digest.feedback.store import Rates, window_rates
from digest.models import SendingState
from digest.settings import Settings

log = logging.getLogger(__name__)

STATE = "main"
#: How often a sender looks at the rates itself (it reads the pause before every claim).
EVALUATE_SECONDS = 10.0


@dataclass(frozen=True)
class BrakeState:
    paused: bool = False
    reason: str | None = None
    paused_at: datetime | None = None
    resumed_at: datetime | None = None
    resumed_by: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "paused": self.paused,
            "reason": self.reason,
            "paused_at": self.paused_at.isoformat() if self.paused_at else None,
            "resumed_at": self.resumed_at.isoformat() if self.resumed_at else None,
            "resumed_by": self.resumed_by,
        }


def state(session: Session) -> BrakeState:
    row = session.get(SendingState, STATE)
    if row is None:
        return BrakeState()
    return BrakeState(row.paused, row.reason, row.paused_at, row.resumed_at, row.resumed_by)


def _ensure_row(session: Session) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(SendingState).values(name=STATE, paused=False).on_conflict_do_nothing())


def engage(session: Session, reason: str, now: datetime) -> bool:
    """Pause sending with ``reason``; False if it was paused already (the first reason stays)."""
    _ensure_row(session)
    changed = session.execute(
        update(SendingState)
        .where(col(SendingState.name) == STATE, col(SendingState.paused).is_(False))
        .values(paused=True, reason=reason, paused_at=now, updated_at=now)
    ).rowcount
    return bool(changed)


def resume(session: Session, now: datetime, by: str) -> BrakeState:
    """Lift the pause; returns the state it was in. Rates count afresh from ``now``."""
    before = state(session)
    _ensure_row(session)
    session.execute(
        update(SendingState)
        .where(col(SendingState.name) == STATE)
        .values(paused=False, reason=None, resumed_at=now, resumed_by=by[:200], updated_at=now)
    )
    return before


def verdict(rates: Rates, settings: Settings) -> str | None:
    """Why these rates stop sending, or None when they are within the limits."""
    if rates.attempted and rates.complaint_rate > settings.complaint_rate_limit:
        return (
            f"complaint rate {rates.complaint_rate:.2%} ({rates.complaints} of the last "
            f"{rates.attempted} deliveries) is above complaint_rate_limit "
            f"{settings.complaint_rate_limit:.2%}"
        )
    enough = rates.attempted >= settings.bounce_rate_min_deliveries
    if enough and rates.bounce_rate > settings.bounce_rate_limit:
        return (
            f"hard-bounce rate {rates.bounce_rate:.2%} ({rates.hard_bounces} of the last "
            f"{rates.attempted} deliveries) is above bounce_rate_limit "
            f"{settings.bounce_rate_limit:.2%}"
        )
    return None


def describe(reason: str) -> str:
    """How the pause is worded wherever it is shown: it names the brake and the way out."""
    return f"the brake is on: {reason}; `digest sending resume` lifts it"


def evaluate(engine: Engine, settings: Settings, now: datetime) -> BrakeState:
    """Compare the rates with the limits and engage the brake if they are past them."""
    with session_scope(engine) as session:
        current = state(session)
        if current.paused:
            return current
        rates = window_rates(session, settings.complaint_window, current.resumed_at)
        why = verdict(rates, settings)
        if why is None:
            return current
        if engage(session, why, now):
            log.error("sending paused: %s", describe(why))
        return state(session)


class Brake:
    """What a sender asks before it claims: is sending paused, and why?

    The pause is read from the store every time (one primary-key read per claim); the rates
    are looked at every ``every`` seconds, so bounces the SMTP server gives in the session
    engage the brake during a run, not only at the next one.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        clock: Callable[[], datetime],
        every: float = EVALUATE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self.every, self.monotonic = every, monotonic
        self._next = 0.0
        self._lock = threading.Lock()

    def reason(self) -> str | None:
        """Why sending is paused (worded by ``describe``), or None."""
        with self._lock:
            due = self.monotonic() >= self._next
            if due:
                self._next = self.monotonic() + self.every
        if due:
            current = evaluate(self.engine, self.settings, self.clock())
        else:
            with Session(self.engine) as session:
                current = state(session)
        return describe(current.reason or "paused") if current.paused else None
