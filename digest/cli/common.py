"""What every subcommand shares: the configured App, ``--now``, JSON output, exit codes."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import FrameType
from typing import Any, TypeVar

import click
from sqlalchemy import Engine

from digest import notify
from digest.clock import parse_now, system_clock
from digest.db import SchemaOutOfDate, create_schema, make_engine
from digest.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_WORK_FAILED = 1
EXIT_BAD_INPUT = 2


class BadInput(click.ClickException):
    """Bad input or usage: exit 2 with a message that names the file, record and field."""

    exit_code = EXIT_BAD_INPUT


class WorkFailed(click.ClickException):
    """The input was fine but the work did not all succeed: exit 1."""

    exit_code = EXIT_WORK_FAILED


@dataclass
class App:
    settings: Settings
    config_path: str | None = None
    quiet: bool = False
    _schema_ready: bool = field(default=False, repr=False)

    @cached_property
    def raw_engine(self) -> Engine:
        """The engine without any schema check (for ``digest db``)."""
        return make_engine(self.settings.database_url)

    @cached_property
    def engine(self) -> Engine:
        """The engine of a store whose schema is current (a fresh one is created)."""
        try:
            create_schema(self.raw_engine)
        except SchemaOutOfDate as exc:
            raise BadInput(str(exc)) from None
        return self.raw_engine


pass_app = click.make_pass_decorator(App)


def require_postal_address(app: App, settings: Settings | None = None) -> None:
    """Refuse to start sending (exit 2, one line naming ``postal_address``) when the members
    in the store need a postal address the settings do not have (``compliance``)."""
    from digest.compliance import sending_problem

    problem = sending_problem(settings or app.settings, app.engine)
    if problem:
        raise BadInput(problem)


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime:
    if value is None:
        return system_clock()
    try:
        return parse_now(value)
    except ValueError as exc:
        raise BadInput(f"--now: {exc}") from None


def now_option(func: F) -> F:
    return click.option(
        "--now",
        callback=_parse_now,
        metavar="ISO-TIME",
        help="Act as if it were this instant (UTC unless an offset is given).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON Lines.")(func)


def say(text: str, **fields: Any) -> None:
    """A command's result line on stdout: the text, or with JSON logs (``log_format``) one
    JSON object holding it and ``fields``, so that output is JSON lines only."""
    from digest.logs import json_logging

    if json_logging():
        click.echo(json.dumps({"message": text, **fields}, ensure_ascii=False, default=str))
    else:
        click.echo(text)


def print_json_lines(rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        click.echo(json.dumps(row, ensure_ascii=False, default=str))


@contextmanager
def stop_on_signals(what: str) -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event instead of killing the process mid-message.

    The sender checks it between messages: what is in flight is finished and recorded, and
    claims not yet attempted are given back. The previous handlers return afterwards.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("digest").info("received %s: %s", signal.Signals(signum).name, what)
        notify.stopping()
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
