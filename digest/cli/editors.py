"""``digest editors add|list|remove``: the newsroom's accounts.

Passwords come from standard input (``--password-stdin``) or a prompt asked twice, never
from the command line, where other users of the machine could read them in the process list.
"""

from __future__ import annotations

import sys

import click
from sqlmodel import Session

from digest import editors
from digest.cli.common import App, BadInput, json_option, now_option, pass_app, print_json_lines
from digest.db import session_scope
from digest.editors import audit


def _actor() -> str:
    """Who made a change from the command line, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return password[:-1] if password.endswith("\r") else password
    return str(click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password"))


@click.group("editors")
def editors_group() -> None:
    """Editor accounts: who may sign in to the newsroom pages (/editor)."""


@editors_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="The editor's name, as pages show it.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (else: prompt twice).",
)
@now_option
@pass_app
def add_command(app: App, email: str, name: str, password_stdin: bool, now: object) -> None:
    """Add an editor account with its own password (hashed with argon2)."""
    password = _read_password(password_stdin)
    problem = editors.accounts.password_problem(password)
    if problem:
        raise BadInput(f"password: {problem}")
    try:
        with session_scope(app.engine) as session:
            view = editors.add_editor(session, email, name, password, now)  # type: ignore[arg-type]
            audit.record(session, _actor(), "editor-add", view.email, now, name)  # type: ignore[arg-type]
    except editors.EditorError as exc:
        raise BadInput(str(exc)) from None
    click.echo(f"added editor {view.email}")


@editors_group.command("list")
@json_option
@pass_app
def list_command(app: App, as_json: bool) -> None:
    """The editor accounts, by address."""
    with Session(app.engine) as session:
        found = editors.list_editors(session)
    if as_json:
        print_json_lines(e.as_json() for e in found)
        return
    if not found:
        click.echo("no editors: add one with `digest editors add EMAIL`")
    for e in found:
        last = e.last_login_at.isoformat() if e.last_login_at else "never signed in"
        click.echo(f"{e.email}\t{e.name or '-'}\t{last}")


@editors_group.command("remove")
@click.argument("email")
@now_option
@pass_app
def remove_command(app: App, email: str, now: object) -> None:
    """Remove an editor account and end every session it has."""
    try:
        with session_scope(app.engine) as session:
            ended = editors.remove_editor(session, email)
            target = " ".join(email.split()).lower()
            audit.record(session, _actor(), "editor-remove", target, now, f"{ended} sessions")  # type: ignore[arg-type]
    except LookupError as exc:
        raise BadInput(str(exc).strip("'\"")) from None
    click.echo(f"removed editor {email.strip()} ({ended} sessions ended)")


COMMANDS = [editors_group]
