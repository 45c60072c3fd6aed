"""``digest deliveries``: what the ledger says was sent, to whom, and what failed and why."""

from __future__ import annotations

from datetime import datetime

import click
from sqlmodel import Session

from digest import ledger
from digest.cli.common import (
    App,
    BadInput,
    json_option,
    now_option,
    pass_app,
    print_json_lines,
)
from digest.db import session_scope
from digest.members import lookup_emails


@click.group("deliveries")
def deliveries_group() -> None:
    """Inspect the delivery ledger."""


@deliveries_group.command("list")
@click.option("--status", type=click.Choice(ledger.DELIVERY_STATUSES), help="Only this status.")
@click.option("--edition", help="Only this edition key, e.g. daily:2026-11-24.")
@click.option("--email", help="Only this member.")
@click.option("--limit", type=int, default=None, help="At most N rows (newest first).")
@json_option
@pass_app
def list_command(
    app: App,
    status: str | None,
    edition: str | None,
    email: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List deliveries, newest first, with their articles and any failure reason."""
    with Session(app.engine) as session:
        rows = ledger.list_deliveries(
            session,
            status=status,
            edition=edition,
            emails=lookup_emails(email) if email else None,
            limit=limit,
        )
    records = [row.as_json() for row in rows]
    if as_json:
        print_json_lines(records)
        return
    if not records:
        click.echo("no deliveries")
        return
    for r in records:
        count = len(r["articles"])
        line = f"#{r['id']:<6} {r['status']:<8} {r['edition']:<18} {r['email']}  {count} articles"
        if r["error"]:
            line += f"  ({r['error']})"
        if r["events"]:
            line += "  [" + ", ".join(e["kind"] for e in r["events"]) + "]"
        click.echo(line)


@deliveries_group.command("show")
@click.argument("delivery_id", type=int)
@json_option
@pass_app
def show_command(app: App, delivery_id: int, as_json: bool) -> None:
    """One delivery: its member, edition, articles, outcome, and what came back about it."""
    with Session(app.engine) as session:
        rows = ledger.list_deliveries(session, delivery_id=delivery_id)
    if not rows:
        raise BadInput(f"no delivery #{delivery_id}")
    record = rows[0].as_json()
    if as_json:
        print_json_lines([record])
        return
    click.echo(f"delivery #{record['id']}: {record['edition']} to {record['email']}")
    click.echo(f"  status      {record['status']} after {record['attempts']} attempt(s)")
    click.echo(f"  message-id  {record['message_id']}")
    click.echo(f"  planned     {record['planned_at']}")
    click.echo(f"  sent        {record['sent_at'] or '-'}")
    if record["error"] or record["smtp_code"]:
        click.echo(f"  server said {record['smtp_code'] or ''} {record['error'] or ''}".rstrip())
    click.echo(f"  articles    {len(record['articles'])}")
    for url in record["articles"]:
        click.echo(f"    - {url}")
    click.echo(f"  events      {len(record['events'])}")
    for e in record["events"]:
        click.echo(
            f"    - {e['received_at']} {e['kind']} via {e['source']}"
            + (f" {e['status_code']}" if e["status_code"] else "")
            + f": {e['effect'] or '-'}"
        )
        if e["diagnostic"]:
            click.echo(f"      {e['diagnostic']}")
        if e["raw_ref"]:
            click.echo(f"      kept as {e['raw_ref']}")


@deliveries_group.command("stats")
@now_option
@json_option
@pass_app
def stats_command(app: App, now: datetime, as_json: bool) -> None:
    """Counts by status and by edition, recent send rate, and the oldest waiting delivery."""
    with Session(app.engine) as session:
        stats = ledger.stats(session, now)
    editions: dict[str, dict[str, int]] = stats["by_edition"]
    sent_last_hour = stats["sent_last_hour"]
    if as_json:
        print_json_lines([stats])
        return
    click.echo("by status:")
    for s, n in stats["by_status"].items():
        click.echo(f"  {s:<8} {n}")
    click.echo("by edition:")
    for edition, counts in editions.items():
        click.echo(f"  {edition:<18} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    click.echo(f"sent in the last hour: {sent_last_hour} ({stats['send_rate_per_minute']}/min)")
    click.echo(f"oldest waiting: {stats['oldest_waiting_planned_at'] or '-'}")
    week = stats["rates_last_7_days"]
    click.echo(f"last 7 days: {_rates_line(week)}")
    if stats["rates_by_edition"]:
        click.echo("bounces and complaints by edition:")
        for edition, rates in stats["rates_by_edition"].items():
            click.echo(f"  {edition:<18} {_rates_line(rates)}")
    events = stats["events"]
    click.echo("received: " + ", ".join(f"{k} {v}" for k, v in events.items()))


def _rates_line(rates: dict[str, float]) -> str:
    """One line of bounce and complaint figures."""
    return (
        f"{rates['attempted']} delivered or refused, hard bounces {rates['hard_bounces']} "
        f"({rates['bounce_rate']:.2%}), soft bounces {rates['soft_bounces']}, complaints "
        f"{rates['complaints']} ({rates['complaint_rate']:.2%}), unsubscribes "
        f"{rates['unsubscribes']}"
    )


@deliveries_group.command("retry")
@click.option("--edition", help="Re-queue the failed deliveries of this edition.")
@click.option("--id", "delivery_id", type=int, help="Re-queue this one delivery.")
@click.option("--all", "everything", is_flag=True, help="Re-queue every failed delivery.")
@now_option
@pass_app
def retry_command(
    app: App, edition: str | None, delivery_id: int | None, everything: bool, now: datetime
) -> None:
    """Put failed deliveries back in the queue; the next `digest run` or worker sends them."""
    if not (edition or delivery_id or everything):
        raise BadInput("say which: --edition KEY, --id N or --all")
    with session_scope(app.engine) as session:
        report = ledger.requeue_failed(session, now, edition=edition, delivery_id=delivery_id)
    click.echo(
        f"re-queued {report.requeued} failed deliveries"
        + (f"; {report.skipped} skipped (their articles went out later)" if report.skipped else "")
    )


COMMANDS = [deliveries_group]
