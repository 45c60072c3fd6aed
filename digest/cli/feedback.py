"""``digest inbound``, ``digest bounces`` and ``digest sending``: what comes back, and the brake."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import click
from sqlmodel import Session

from digest import brake
from digest.cli.common import (
    App,
    BadInput,
    WorkFailed,
    json_option,
    now_option,
    pass_app,
    print_json_lines,
    stop_on_signals,
)
from digest.clock import system_clock
from digest.db import session_scope
from digest.feedback import store
from digest.feedback.imap import MailboxError, Poller
from digest.feedback.intake import Intake, IntakeCounts
from digest.models import EVENT_KINDS


def _intake(app: App) -> Intake:
    try:
        return Intake(app.engine, app.settings, system_clock)
    except ValueError as exc:  # no secret key: tokens cannot be checked
        raise BadInput(str(exc)) from None


@click.command("inbound")
@click.option("--host", default=None, help="Address to listen on [inbound_host].")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port [inbound_port].")
@click.option("--lmtp", is_flag=True, help="Speak LMTP (for an MTA's lmtp transport), not SMTP.")
@pass_app
def inbound_command(app: App, host: str | None, port: int | None, lmtp: bool) -> None:
    """Receive bounces, complaints and unsubscribe mails for the bounce domain, until SIGTERM.

    Put it behind the bounce domain's MX. It takes mail for the bounce address (and its VERP
    return paths), the complaint address and the List-Unsubscribe address, and refuses every
    other recipient in the SMTP session.
    """
    from digest.feedback.inbound import make_server

    intake = _intake(app)
    host = host or app.settings.inbound_host
    port = port or app.settings.inbound_port
    if not app.settings.bounce_address:
        click.echo(
            "warning: bounce_address is not set: digests carry no VERP return path, so only "
            "complaints, unsubscribe mails and bounces quoting a Message-ID can be matched",
            err=True,
        )
    server = make_server(intake, app.settings, host, port, lmtp=lmtp)
    try:
        server.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise WorkFailed(f"digest inbound could not listen on {host}:{port}: {exc}") from None
    click.echo(
        f"digest inbound: {'LMTP' if lmtp else 'SMTP'} on {host}:{port}; SIGTERM stops it",
        err=True,
    )
    try:
        with stop_on_signals("stopping the receiver") as stop:
            stop.wait()
    finally:
        server.stop()


# ------------------------------------------------------------------ digest bounces


@click.group("bounces")
def bounces_group() -> None:
    """Returned mail: read the bounce mailbox, list what came back."""


@bounces_group.command("poll")
@click.option("--limit", type=click.IntRange(min=1), help="At most N messages this time.")
@pass_app
def poll_command(app: App, limit: int | None) -> None:
    """Read the IMAP bounce mailbox once: record each message, move it to the processed folder.

    Messages nothing can be made of stay in the folder, flagged $DigestUnclassified, and are
    counted; none is ever deleted unread. Exits 1 if the mailbox could not be read or a
    message could not be recorded.
    """
    if not app.settings.imap_host:
        raise BadInput("no bounce mailbox: set DIGEST_IMAP_HOST (and _USERNAME, _PASSWORD)")
    poller = Poller(_intake(app), app.settings)
    try:
        report = poller.poll(limit)
    except MailboxError as exc:
        raise WorkFailed(f"the bounce mailbox could not be read: {exc}") from None
    click.echo(report.summary())
    for error in report.errors[:20]:
        click.echo(f"failed: {error}", err=True)
    if report.failed:
        raise WorkFailed(f"{report.failed} messages not recorded; they stay for the next poll")


@bounces_group.command("process")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@pass_app
def process_command(app: App, files: tuple[str, ...]) -> None:
    """Record returned messages saved as .eml files (e.g. from another mailbox).

    The same message twice is recorded once.
    """
    intake = _intake(app)
    counts = IntakeCounts()
    for name in files:
        data = Path(name).read_bytes()
        if len(data) > app.settings.inbound_max_bytes:
            raise BadInput(f"{name}: larger than inbound_max_bytes ({len(data)} bytes)")
        recorded = intake.receive_mail(data, "file")
        counts.add(recorded)
        click.echo(f"{name}: {recorded.kind}: {recorded.effect}")
    click.echo(counts.summary())


@bounces_group.command("list")
@click.option("--kind", type=click.Choice(EVENT_KINDS), help="Only this kind.")
@click.option("--days", type=click.IntRange(min=1), help="Only events received in the last N days.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@now_option
@json_option
@pass_app
def list_command(
    app: App, kind: str | None, days: int | None, limit: int, now: datetime, as_json: bool
) -> None:
    """Bounces, complaints, unsubscribes and unclassified mail, newest first."""
    since = now - timedelta(days=days) if days else None
    with Session(app.engine) as session:
        rows = store.list_events(session, kind=kind, since=since, limit=limit)
    if as_json:
        print_json_lines(row.as_json() for row in rows)
        return
    if not rows:
        click.echo("no events")
        return
    for row in rows:
        who = row.email or row.recipient or "-"
        delivery = f"#{row.delivery_id}" if row.delivery_id else "-"
        click.echo(
            f"{row.received_at:%Y-%m-%d %H:%M} {row.kind:<12} {row.source:<8} {delivery:<7} "
            f"{who}  {row.status_code or ''} {row.effect or ''}".rstrip()
        )


# ------------------------------------------------------------------ digest sending


@click.group("sending")
def sending_group() -> None:
    """The brake: is sending paused, pause it, resume it."""


@sending_group.command("status")
@json_option
@pass_app
def sending_status_command(app: App, as_json: bool) -> None:
    """Whether sending is paused, why and since when."""
    with Session(app.engine) as session:
        current = brake.state(session)
    if as_json:
        click.echo(json.dumps(current.as_json()))
        return
    if current.paused:
        click.echo(f"sending paused since {current.paused_at}: {current.reason}")
    else:
        since = f" (resumed {current.resumed_at})" if current.resumed_at else ""
        click.echo(f"sending is on{since}")


@sending_group.command("resume")
@now_option
@pass_app
def resume_command(app: App, now: datetime) -> None:
    """Lift the brake: workers and the scheduler claim deliveries again.

    Bounces and complaints count afresh from now, so the brake engages again only on new ones.
    """
    import getpass
    import socket

    who = f"{getpass.getuser()}@{socket.gethostname()}"
    with session_scope(app.engine) as session:
        before = brake.resume(session, now, who)
    if before.paused:
        click.echo(f"sending resumed (it was paused since {before.paused_at}: {before.reason})")
    else:
        click.echo("sending was not paused; nothing to resume")


@sending_group.command("pause")
@click.option("--reason", required=True, help="Why, as `digest status` will show it.")
@now_option
@pass_app
def pause_command(app: App, reason: str, now: datetime) -> None:
    """Pause sending by hand (the same brake): nothing is claimed until `digest sending resume`."""
    with session_scope(app.engine) as session:
        changed = brake.engage(session, f"paused by an operator: {reason}", now)
    click.echo("sending paused" if changed else "sending was paused already")


COMMANDS = [inbound_command, bounces_group, sending_group]
