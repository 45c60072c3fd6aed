"""``digest doctor`` (is this configuration ready to send?), ``digest templates check`` and
``digest templates copy``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from digest.cli.common import (
    EXIT_WORK_FAILED,
    App,
    BadInput,
    json_option,
    pass_app,
    print_json_lines,
)
from digest.doctor import (
    WORDS,
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
@click.option("--no-dns", is_flag=True, help="Skip the DNS records (SPF, DKIM, DMARC, MX).")
@json_option
@pass_app
@click.pass_context
def doctor_command(
    ctx: click.Context,
    app: App,
    no_smtp: bool,
    no_spamassassin: bool,
    no_dns: bool,
    as_json: bool,
) -> None:
    """Check From, the store (reachable, schema current), SMTP, DNS (SPF, DKIM, DMARC,
    bounce MX), links, templates, size and spam score; each line says ok, warning or error;
    exit 1 on any error.

    Nothing is sent: the SMTP check connects, says EHLO (and STARTTLS/AUTH where configured)
    and quits. DNS is read from dns_nameserver, or the system's resolver.
    """
    checks = run_checks(
        app.settings, smtp=not no_smtp, spamassassin=not no_spamassassin, dns=not no_dns
    )
    if as_json:
        print_json_lines(
            {"check": c.name, "status": WORDS[c.status], "detail": c.detail} for c in checks
        )
    else:
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
