"""``digest db``: schema migrations (Alembic) and a reachability check."""

from __future__ import annotations

import click

from digest.cli.common import App, BadInput, pass_app
from digest.db import current_revision, head_revision, ping, upgrade_schema


@click.group("db")
def db_group() -> None:
    """Manage the store's schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_app
def upgrade_command(app: App, revision: str) -> None:
    """Apply the schema migrations (safe to run repeatedly; back up the database first)."""
    from alembic.util.exc import CommandError

    engine = app.raw_engine
    try:
        before, after = upgrade_schema(engine, revision)
    except CommandError as exc:  # an unknown revision, or one that is not ahead
        raise BadInput(f"--revision {revision}: {exc}") from None
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"{where}: schema already at {after}")
    else:
        click.echo(f"{where}: schema upgraded from {before or 'empty'} to {after}")


@db_group.command("status")
@pass_app
def status_command(app: App) -> None:
    """Show the schema revision of the store and the one this version expects."""
    engine = app.raw_engine
    current, head = current_revision(engine), head_revision(engine)
    click.echo(f"store: {current or 'empty'}; this version: {head}")
    if current != head:
        raise click.ClickException("schema out of date: run `digest db upgrade`")


@db_group.command("check")
@pass_app
def check_command(app: App) -> None:
    """Exit 0 if the store answers, 1 if not."""
    try:
        ping(app.raw_engine)
    except Exception as exc:  # any driver error means "not reachable"
        raise click.ClickException(f"database not reachable: {exc}") from None
    click.echo("ok")


COMMANDS = [db_group]
