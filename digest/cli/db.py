"""``digest db``: create or check the schema."""

from __future__ import annotations

import click
from sqlalchemy import inspect

from digest.cli.common import App, pass_app
from digest.db import ping


@click.group("db")
def db_group() -> None:
    """Manage the store's schema."""


@db_group.command("upgrade")
@pass_app
def upgrade_command(app: App) -> None:
    """Create any missing tables (safe to run repeatedly)."""
    engine = app.engine  # creating the engine creates missing tables
    tables = sorted(inspect(engine).get_table_names())
    click.echo(f"schema ready at {engine.url.render_as_string(hide_password=True)}: {', '.join(tables)}")


@db_group.command("check")
@pass_app
def check_command(app: App) -> None:
    """Exit 0 if the store answers, 1 if not."""
    try:
        ping(app.engine)
    except Exception as exc:  # any driver error means "not reachable"
        raise click.ClickException(f"database not reachable: {exc}") from None
    click.echo("ok")


COMMANDS = [db_group]
