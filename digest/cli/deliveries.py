"""``digest deliveries``: what the ledger says was sent, to whom, and what failed and why."""

from __future__ import annotations

from datetime import datetime, timedelta

import click
from sqlalchemy import func
from sqlmodel import Session, col, select

from digest.cli.common import (
    App,
    BadInput,
    iso,
    json_option,
    now_option,
    pass_app,
    print_json_lines,
)
from digest.db import session_scope
from digest.ledger import requeue_failed
from digest.members import lookup_emails
from digest.models import DELIVERY_STATUSES, Article, Delivery, Subscriber


@click.group("deliveries")
def deliveries_group() -> None:
    """Inspect the delivery ledger."""


@deliveries_group.command("list")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="Only this status.")
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
        query = select(Delivery, Subscriber.email).join(
            Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id)
        )
        if status:
            query = query.where(Delivery.status == status)
        if edition:
            query = query.where(Delivery.edition == edition)
        if email:
            query = query.where(col(Subscriber.email).in_(lookup_emails(email)))
        query = query.order_by(col(Delivery.id).desc())
        if limit:
            query = query.limit(limit)
        rows = session.exec(query).all()
        ids = {i for d, _ in rows for i in d.article_ids}
        urls = (
            dict(
                session.exec(select(Article.id, Article.url).where(col(Article.id).in_(ids))).all()
            )
            if ids
            else {}
        )
        records = [
            {
                "id": d.id,
                "email": addr,
                "edition": d.edition,
                "status": d.status,
                "message_id": d.message_id,
                "articles": [urls[i] for i in d.article_ids if i in urls],
                "error": d.error,
                "smtp_code": d.smtp_code,
                "attempts": d.attempts,
                "planned_at": iso(d.planned_at),
                "sent_at": iso(d.sent_at),
            }
            for d, addr in rows
        ]
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
        click.echo(line)


@deliveries_group.command("stats")
@now_option
@json_option
@pass_app
def stats_command(app: App, now: datetime, as_json: bool) -> None:
    """Counts by status and by edition, recent send rate, and the oldest waiting delivery."""
    with Session(app.engine) as session:
        by_status = dict(
            session.exec(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )
        by_edition = session.exec(
            select(Delivery.edition, Delivery.status, func.count())
            .group_by(Delivery.edition, Delivery.status)
            .order_by(Delivery.edition)
        ).all()
        hour_ago = now - timedelta(hours=1)
        sent_last_hour = session.exec(
            select(func.count()).where(
                Delivery.status == "sent",
                col(Delivery.sent_at) > hour_ago,
                col(Delivery.sent_at) <= now,
            )
        ).one()
        oldest = session.exec(
            select(func.min(Delivery.planned_at)).where(
                col(Delivery.status).in_(("planned", "retry"))
            )
        ).one()
    editions: dict[str, dict[str, int]] = {}
    for edition, status, count in by_edition:
        editions.setdefault(edition, {})[status] = count
    stats = {
        "by_status": {s: by_status.get(s, 0) for s in DELIVERY_STATUSES},
        "by_edition": editions,
        "sent_last_hour": sent_last_hour,
        "send_rate_per_minute": round(sent_last_hour / 60, 2),
        "oldest_waiting_planned_at": iso(oldest),
        "total": sum(by_status.values()),
    }
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
        report = requeue_failed(session, now, edition=edition, delivery_id=delivery_id)
    click.echo(
        f"re-queued {report.requeued} failed deliveries"
        + (f"; {report.skipped} skipped (their articles went out later)" if report.skipped else "")
    )


COMMANDS = [deliveries_group]
