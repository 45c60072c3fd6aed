"""The ``digest`` command: one configured ``App`` and thin subcommands over the library.

Exit codes: 0 success, 1 the work failed (e.g. some deliveries failed), 2 bad input or usage.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from sqlalchemy.exc import InterfaceError, OperationalError

from digest import __version__, logs
from digest.cli.common import App, BadInput, pass_app
from digest.db import store_unreachable, unreachable_reason
from digest.settings import SettingsError, load_settings


class _Group(click.Group):
    """Every command: a store that cannot be reached is one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            try:
                return super().invoke(ctx)
            except Exception as exc:
                known = isinstance(exc, OperationalError | InterfaceError)
                if not (known or store_unreachable(exc)):
                    raise
                raise click.ClickException(
                    f"the store is not reachable: {unreachable_reason(exc)}"
                ) from None
        except click.ClickException as exc:
            if not logs.json_logging():
                raise
            # a JSON log holds only JSON: the error is one more line of it
            logging.getLogger("digest").error(exc.format_message())
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Settings file (TOML); default: $DIGEST_CONFIG, else built-in defaults.",
)
@click.option("--database-url", help="SQLAlchemy URL of the store (overrides DIGEST_DATABASE_URL).")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: str | None,
    database_url: str | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Topic digests by email: articles in, one digest per member out, every delivery recorded."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    # JSON from the first line when the environment asks for it, even if the config is bad
    wanted = os.environ.get("DIGEST_LOG_FORMAT", "text").strip().lower()
    logs.configure(level, "json" if wanted == "json" else "text", sys.stderr)
    for noisy in ("alembic", "mail.log", "apscheduler"):  # chatty libraries
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    try:
        settings = load_settings(config_path, overrides={"database_url": database_url})
    except SettingsError as exc:
        raise BadInput(str(exc)) from None
    logs.configure(level, settings.log_format, sys.stderr)
    ctx.obj = App(settings=settings, config_path=config_path, quiet=quiet)


def _register() -> None:
    from digest.cli import (
        articles,
        config,
        db,
        deliveries,
        demo,
        doctor,
        editors,
        feedback,
        init,
        resources,
        run,
        service,
        subscribers,
        web,
        worker,
    )

    modules = (
        init,
        articles,
        subscribers,
        editors,
        resources,
        run,
        worker,
        service,
        web,
        deliveries,
        feedback,
    )
    for module in (*modules, config, doctor, demo, db):
        for command in module.COMMANDS:
            main.add_command(command)
    for command in doctor.TEMPLATES_COMMANDS:
        main.add_command(command)


_register()

__all__ = ["main", "pass_app"]
