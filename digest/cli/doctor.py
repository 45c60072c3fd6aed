"""``digest doctor`` (is this configuration ready to send?) and ``digest templates check``."""

from __future__ import annotations

import click

from digest.cli.common import EXIT_WORK_FAILED, App, pass_app
from digest.doctor import (
    failed,
    format_checklist,
    page_template_problems,
    run_checks,
    template_problems,
    templates_in_use,
)


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


COMMANDS = [doctor_command]
#: ``digest templates check``; register alongside COMMANDS if no other module owns "templates".
TEMPLATES_COMMANDS = [templates_group]
