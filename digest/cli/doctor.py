"""``digest doctor`` (is this configuration ready to send?), ``digest templates check`` and
``digest templates copy``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from digest.cli.common import EXIT_WORK_FAILED, App, BadInput, pass_app
from digest.doctor import (
    failed,
    format_checklist,
    page_template_problems,
    run_checks,
    template_problems,
    templates_in_use,
)
from digest.resources import copy_templates


@click.command("doctor")
@click.option("--no-smtp", is_flag=True, help="Skip connecting to the SMTP server.")
@click.option("--no-spamassassin", is_flag=True, help="Skip scoring a sample with SpamAssassin.")
@pass_app
@click.pass_context
def doctor_command(ctx: click.Context, app: App, no_smtp: bool, no_spamassassin: bool) -> None:
    """Check From, SMTP, DKIM, links, templates, size and spam score; exit 1 on any failure.

    Nothing is sent: the SMTP check connects, says EHLO (and STARTTLS/AUTH where configured)
    and quits.
    """
    checks = run_checks(app.settings, smtp=not no_smtp, spamassassin=not no_spamassassin)
    click.echo(format_checklist(checks))
    if failed(checks):
        ctx.exit(EXIT_WORK_FAILED)


@click.group("templates")
def templates_group() -> None:
    """Email and web page templates: check them, or copy the built-in ones to restyle."""


@templates_group.command("check")
@pass_app
@click.pass_context
def templates_check_command(ctx: click.Context, app: App) -> None:
    """Compile and render every email template and compile every web page; report problems
    with file and line."""
    templates_dir = app.settings.templates_dir
    problems = template_problems(templates_dir) + page_template_problems(templates_dir)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        ctx.exit(EXIT_WORK_FAILED)
    click.echo(f"{templates_in_use(templates_dir)}: every template compiles, emails render")


@templates_group.command("copy")
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Replace files already in FOLDER.")
def templates_copy_command(folder: str, names: tuple[str, ...], force: bool) -> None:
    """Copy the built-in templates (or only NAMES, e.g. email/layout.mjml.j2 web/static/site.css)
    into FOLDER to restyle them, then set templates_dir to FOLDER.

    Copy only what you change: the templates not in FOLDER stay built-in and follow upgrades.
    """
    try:
        written = copy_templates(folder, names, overwrite=force)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    except FileExistsError as exc:
        raise BadInput(f"{exc} (--force replaces it)") from None
    for path in written:
        click.echo(f"wrote {path}")
    where = json.dumps(str(Path(folder).resolve()))
    click.echo(f"to use them: templates_dir = {where} (or DIGEST_TEMPLATES_DIR)")


COMMANDS = [doctor_command]
#: ``digest templates check``; register alongside COMMANDS if no other module owns "templates".
TEMPLATES_COMMANDS = [templates_group]
