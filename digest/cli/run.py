"""``digest plan``, ``digest run`` and ``digest preview``."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from sqlmodel import Session

from digest.cli.common import (
    App,
    BadInput,
    WorkFailed,
    now_option,
    pass_app,
    require_postal_address,
    stop_on_signals,
)
from digest.cli.held import dead_holders_failure, settle_held, wait_held_option
from digest.cli.progress import progress_bar
from digest.clock import running_clock
from digest.compose import UnmailableAddress
from digest.doctor import template_problems
from digest.editions import Editions
from digest.mailer import make_transport
from digest.members import get_member
from digest.plan import PlanReport, plan
from digest.preview import preview
from digest.send import Progress, SendReport, send_due, worker_name


def _editions(app: App, check_templates: bool = False) -> Editions:
    """The renderer/composer for these settings; bad keys or templates are bad input (exit 2)."""
    if check_templates:
        problems = template_problems(app.settings.templates_dir)
        if problems:
            raise BadInput("templates do not compile:\n" + "\n".join(problems))
    try:
        return Editions(app.settings)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _print_plan_items(report: PlanReport, as_json: bool) -> None:
    for item in report.items:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "email": item.email,
                        "edition": item.edition,
                        "status": item.status,
                        "reason": item.reason,
                        "articles": [a.url for a in item.articles],
                        "titles": [a.title for a in item.articles],
                    },
                    ensure_ascii=False,
                )
            )
            continue
        if not item.planned:
            click.echo(f"{item.email}  {item.edition}  skipped ({item.reason})")
            continue
        click.echo(f"{item.email}  {item.edition}  {len(item.articles)} articles")
        for article in item.articles:
            click.echo(f"    - {article.title}  <{article.url}>")


def _summary(plan_report: PlanReport, send_report: SendReport | None) -> str:
    parts = [
        f"planned {plan_report.planned}",
        f"skipped empty {plan_report.skipped_empty}",
        f"skipped stale {plan_report.skipped_stale}",
        f"already planned {plan_report.already_planned}",
    ]
    if send_report is not None:
        parts += [
            f"sent {send_report.sent}",
            f"retry {send_report.retry}",
            f"failed {send_report.failed}",
        ]
    return f"{plan_report.members} members: " + ", ".join(parts)


def _plan(
    app: App, now: datetime, dry_run: bool, emails: tuple[str, ...], force: bool
) -> PlanReport:
    with progress_bar("planning", None, app.quiet, "members") as bar:
        return plan(
            app.engine,
            app.settings,
            now,
            dry_run=dry_run,
            emails=list(emails) or None,
            force=force,
            progress=bar,
        )


def _member_ids(app: App, emails: tuple[str, ...]) -> list[int]:
    """The members ``--email`` names; an address that is nobody's is bad input."""
    with Session(app.engine) as session:
        found = {e: get_member(session, e) for e in emails}
    missing = [e for e, m in found.items() if m is None]
    if missing:
        raise BadInput(f"no such subscriber: {', '.join(missing)}")
    return [m.id for m in found.values() if m is not None and m.id is not None]


_force_option = click.option(
    "--force",
    is_flag=True,
    help="Plan each member's edition for the current period now, whatever their send hour.",
)
_email_option = click.option(
    "--email", "emails", multiple=True, metavar="EMAIL", help="Only these members (repeatable)."
)


@click.command("plan")
@now_option
@click.option("--dry-run", is_flag=True, help="Show who would get what; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print JSON Lines.")
@_force_option
@_email_option
@pass_app
def plan_command(
    app: App, now: datetime, dry_run: bool, as_json: bool, force: bool, emails: tuple[str, ...]
) -> None:
    """Plan the editions due at NOW without sending them."""
    if emails:
        _member_ids(app, emails)
    report = _plan(app, now, dry_run, emails, force)
    if dry_run:
        _print_plan_items(report, as_json)
    click.echo(_summary(report, None), err=as_json)


@click.command("run")
@now_option
@click.option(
    "--dry-run", is_flag=True, help="Show who would get which articles; write and send nothing."
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print JSON Lines.")
@_force_option
@_email_option
@wait_held_option
@pass_app
def run_command(
    app: App,
    now: datetime,
    dry_run: bool,
    as_json: bool,
    force: bool,
    emails: tuple[str, ...],
    wait_held: bool,
) -> None:
    """Plan the due editions, render and send them, and record every delivery.

    Exits 1 if any delivery failed or is waiting to be retried, or is still held by a
    process that is no longer running (a run killed with -9; see --wait-held).
    """
    editions = _editions(app, check_templates=True)
    only = _member_ids(app, emails) if emails else None
    if not dry_run:
        require_postal_address(app)
    report = _plan(app, now, dry_run, emails, force)
    if dry_run:
        _print_plan_items(report, as_json)
        click.echo("dry run: nothing written, nothing sent", err=True)
        click.echo(_summary(report, None), err=as_json)
        return
    clock = running_clock(now)
    own = worker_name()
    with stop_on_signals("finishing messages in flight") as stop:

        def send(progress: Progress | None = None) -> SendReport:
            return send_due(
                app.engine,
                app.settings,
                lambda: make_transport(app.settings),
                editions,
                clock,
                worker_id=own,
                progress=progress,
                should_stop=stop.is_set,
                subscriber_ids=only,
            )

        with progress_bar("sending", report.planned, app.quiet, "msg") as bar:
            sent = send(bar)
        more, dead = settle_held(
            app.engine, clock, own, stop, send, wait=wait_held, subscriber_ids=only
        )
        sent.add(more)
        sent.errors.extend(more.errors)
        sent.paused_reason = sent.paused_reason or more.paused_reason
    click.echo(_summary(report, sent))
    if stop.is_set():
        raise WorkFailed(
            f"stopped before everything was sent ({sent.released} claims given back); "
            "what is left stays planned for the next run"
        )
    for error in sent.errors[:20]:
        click.echo(f"failed: {error}", err=True)
    if sent.paused_reason:  # what is left stays planned for when sending goes on
        raise WorkFailed(f"sending paused: {sent.paused_reason}")
    if sent.failed or sent.retry:
        raise WorkFailed(f"{sent.failed} deliveries failed, {sent.retry} to retry later")
    if dead:
        raise WorkFailed(dead_holders_failure(dead))


@click.command("preview")
@click.option("--email", required=True, help="The member to preview as.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "text", "eml", "subject"]),
    default="html",
    show_default=True,
    help="html / text part, the whole message (eml), or the subject.",
)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to FILE.")
@click.option("--edition", help="Render this recorded edition again (e.g. daily:2026-11-24).")
@now_option
@pass_app
def preview_command(
    app: App, email: str, fmt: str, out: str | None, edition: str | None, now: datetime
) -> None:
    """Render exactly what a member would get now, through the sending code path; record nothing."""
    editions = _editions(app)
    try:
        result = preview(app.engine, app.settings, editions, now, email=email, edition=edition)
    except LookupError as exc:
        raise BadInput(str(exc)) from None
    except UnmailableAddress as exc:  # a stored address no message can be written to
        raise WorkFailed(f"cannot compose a message for {email}: {exc}") from None
    if result is None:
        click.echo(f"{email}: no articles would be sent right now (empty selection)", err=True)
        return
    if fmt == "eml":
        payload: bytes = result.message
    else:
        text = {
            "html": result.rendered.html,
            "text": result.rendered.text,
            "subject": result.rendered.subject,
        }[fmt]
        payload = text.encode("utf-8")
    if out:
        Path(out).write_bytes(payload)
        click.echo(
            f"{result.edition} for {email}: {len(result.articles)} articles -> {out}", err=True
        )
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(payload if payload.endswith(b"\n") else payload + b"\n")
        sys.stdout.buffer.flush()


COMMANDS = [plan_command, run_command, preview_command]
