"""``digest articles import|list``: bring articles into the store and look at them.

An import is all or nothing by default: every input is parsed and validated first, and one
bad record means nothing is written (exit 2), so a half-imported archive never reaches a
digest. ``--skip-invalid`` imports the good records and lists the bad ones.
"""

from __future__ import annotations

from datetime import datetime

import click
from sqlmodel import Session

from digest.catalog import list_articles
from digest.cli.common import (
    App,
    BadInput,
    json_option,
    now_option,
    pass_app,
    print_json_lines,
)
from digest.cli.progress import progress_bar
from digest.clock import parse_instant
from digest.db import session_scope
from digest.ingest import expand_paths, load_sources, upsert_articles


@click.group("articles")
def articles_group() -> None:
    """Import and list articles."""


@articles_group.command("import")
@click.argument("paths", nargs=-1, required=True)
@now_option
@click.option("--skip-invalid", is_flag=True, help="Import the valid records; list the others.")
@click.option("--dry-run", is_flag=True, help="Validate and count, but write nothing.")
@pass_app
def import_command(
    app: App, paths: tuple[str, ...], now: datetime, skip_invalid: bool, dry_run: bool
) -> None:
    """Import articles from files, folders (recursively) or feed URLs.

    Formats: JSON (object, list or JSON Lines), Markdown with YAML front matter, RSS/Atom
    and JSON Feed. Feed entries without a date are dated NOW.
    """
    sources, errors = expand_paths(paths)
    with progress_bar("reading", total=len(sources), quiet=app.quiet, unit="file") as advance:
        batch = load_sources(
            sources,
            now,
            app.settings.max_import_bytes,
            progress=advance,
            allow_private_feed_hosts=app.settings.allow_private_feed_hosts,
        )
    batch.errors[:0] = errors
    for warning in batch.warnings:
        click.echo(f"warning: {warning}", err=True)
    if batch.errors and not skip_invalid:
        for error in batch.errors:
            click.echo(str(error), err=True)
        raise BadInput(
            f"{len(batch.errors)} invalid input(s); nothing imported "
            "(fix them, or use --skip-invalid to import the valid records)"
        )

    if dry_run:
        with Session(app.engine, expire_on_commit=False) as session:
            counts = upsert_articles(session, batch.records, now)
            session.rollback()
    else:
        with session_scope(app.engine) as session:
            counts = upsert_articles(session, batch.records, now)

    verb = "Would import" if dry_run else "Imported"
    click.echo(f"{verb} {counts.total} articles ({counts}) from {batch.files} files")
    if dry_run:
        click.echo("Dry run: nothing written.")
    if batch.errors:
        click.echo(f"Skipped {len(batch.errors)} invalid:", err=True)
        for error in batch.errors:
            click.echo(f"  {error}", err=True)


def _parse_since(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None


@articles_group.command("list")
@json_option
@click.option("--topic", help="Only articles with this topic (any case or spacing).")
@click.option("--since", callback=_parse_since, metavar="ISO-TIME", help="First seen at or after.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many articles.")
@pass_app
def list_command(
    app: App, as_json: bool, topic: str | None, since: datetime | None, limit: int | None
) -> None:
    """List articles, newest first seen first."""
    with Session(app.engine) as session:
        rows = list_articles(session, topic=topic, since=since, limit=limit)
    if as_json:
        print_json_lines(rows)
        return
    if not rows:
        click.echo("No articles.")
        return
    click.echo(f"{'FIRST SEEN':<17} {'PUBLISHED':<10} TITLE [TOPICS]")
    for row in rows:
        seen = (row["first_seen_at"] or "")[:16].replace("T", " ")
        published = (row["published_at"] or "")[:10]
        title = row["title"] if len(row["title"]) <= 70 else row["title"][:69] + "…"
        tags = f" [{', '.join(row['topics'])}]" if row["topics"] else ""
        click.echo(f"{seen:<17} {published:<10} {title}{tags}")
    click.echo(f"{len(rows)} articles")


COMMANDS = [articles_group]
