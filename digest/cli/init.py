"""``digest init [FOLDER]``: a commented ``digest.toml`` and a ``.env`` with new secrets."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import click

from digest.cli.common import BadInput
from digest.init_files import GENERATED, plan_files, write_files


@click.command("init")
@click.argument("folder", default=".", type=click.Path(file_okay=False))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the SQLite store and saved mail go (default: FOLDER/data).",
)
@click.option("--force", is_flag=True, help="Replace existing files (and their secrets).")
def init_command(folder: str, data_dir: str | None, force: bool) -> None:
    """Start an install in FOLDER (default: here): digest.toml, every setting with its default
    and meaning, and .env (mode 0600) with DIGEST_CONFIG and newly generated secrets.

    Existing files are left alone unless --force. The secrets are not shown: they are in .env.
    """
    try:
        files = plan_files(folder, datetime.now(UTC), data_dir)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    try:
        write_files(files, overwrite=force)
    except FileExistsError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{files.folder}: cannot write there: {exc.strerror or exc}") from None
    generated = ", ".join(f"DIGEST_{key.upper()}" for key in GENERATED)
    click.echo(f"wrote {files.config_path} (settings: set from_address, base_url and [smtp])")
    click.echo(f"wrote {files.env_path} (mode 0600; {generated} generated, not shown here)")
    env = shlex.quote(str(files.env_path))
    click.echo("next:")
    click.echo(f"  set -a; . {env}; set +a")
    click.echo("  digest db upgrade && digest doctor")
    click.echo("  digest serve                      # or config/digest.service under systemd")


COMMANDS = [init_command]
