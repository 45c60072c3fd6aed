"""``digest subscribers``: import, add, list, export and remove members.

The commands are thin: validation and the suppression rule live in ``digest.members`` so the
web preferences page and the bounce handler obey the same rules as the operator.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from digest import members
from digest.cli.common import App, BadInput, json_option, now_option, pass_app, print_json_lines
from digest.db import session_scope
from digest.models import MEMBER_STATUSES

#: Errors printed for a rejected import; the rest are counted, not listed.
SHOWN_ERRORS = 200


@click.group("subscribers")
def subscribers_group() -> None:
    """Manage members: import a CSV, add, list, export, remove."""


def _print_errors(report: members.ImportReport) -> None:
    for error in report.errors[:SHOWN_ERRORS]:
        click.echo(error, err=True)
    if report.invalid > SHOWN_ERRORS:
        click.echo(f"... and {report.invalid - SHOWN_ERRORS} more invalid rows", err=True)


class _DryRun(Exception):
    """Raised inside the transaction so a dry run rolls back everything it wrote."""


@subscribers_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows; list the bad ones.")
@click.option(
    "--status",
    type=click.Choice(members.NEW_MEMBER_STATUSES),
    default=members.ACTIVE,
    show_default=True,
    help="Status of new members (pending: they still have to confirm).",
)
@click.option("--dry-run", is_flag=True, help="Check and count; write nothing.")
@now_option
@pass_app
def import_command(
    app: App, file: Path, skip_invalid: bool, status: str, dry_run: bool, now: datetime
) -> None:
    """Create or update members from FILE (columns: email, name, topics, frequency, timezone,
    send_hour, follows).

    Unsubscribed and bounced addresses are never changed. Any invalid row rejects the whole
    file (exit 2) unless --skip-invalid is given.
    """
    report: members.ImportReport | None = None
    try:
        with session_scope(app.engine) as session:
            report = members.import_csv_file(
                session,
                file,
                now,
                max_bytes=app.settings.max_import_bytes,
                status=status,
                skip_invalid=skip_invalid,
                max_topics=app.settings.max_topics_per_member,
            )
            if report.invalid and not skip_invalid:
                _print_errors(report)
                raise BadInput(
                    f"{report.invalid} invalid rows in {file.name}; nothing imported "
                    "(fix them, or use --skip-invalid to import the valid rows)"
                )
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except members.ImportFileError as exc:
        raise BadInput(str(exc)) from None
    assert report is not None
    _print_errors(report)
    if report.invalid:
        click.echo(f"Skipped {report.invalid} invalid rows", err=True)
    prefix = "Dry run (nothing written): " if dry_run else ""
    click.echo(prefix + report.summary())


def _worded(error: members.MemberError) -> str:
    """A member field error in this command's words (its options, not the record's fields)."""
    if error.code == "no_topics":
        return f"{error.where}: field 'topics': a new member needs at least one --topic or --follow"
    return str(error)


def _split_topics(values: tuple[str, ...]) -> list[str] | None:
    return list(values) if values else None


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", help="Display name (used in the greeting).")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="TOPIC",
    help="Topic (repeatable; 'A;B' also works).",
)
@click.option(
    "--follow",
    "follows",
    multiple=True,
    metavar="NAME",
    help="Follow a person or organisation, by name or slug (repeatable; 'A;B' also works).",
)
@click.option("--frequency", type=click.Choice(members.FREQUENCIES, case_sensitive=False))
@click.option("--timezone", metavar="TZ", help="IANA time zone, e.g. Europe/London.")
@click.option("--send-hour", type=int, metavar="H", help="Local hour (0-23) to send at.")
@click.option(
    "--status",
    type=click.Choice(members.OPERATOR_STATUSES),
    help="Status (new members: active unless pending is given).",
)
@click.option(
    "--reactivate",
    is_flag=True,
    help="Allow re-subscribing an unsubscribed or bounced address (only if they asked).",
)
@now_option
@json_option
@pass_app
def add_command(
    app: App,
    email: str,
    name: str | None,
    topics: tuple[str, ...],
    follows: tuple[str, ...],
    frequency: str | None,
    timezone: str | None,
    send_hour: int | None,
    status: str | None,
    reactivate: bool,
    now: datetime,
    as_json: bool,
) -> None:
    """Add a member, or update the given fields of an existing one."""
    try:
        record, given = members.parse_changes(
            email,
            "add",
            name=name,
            topics=_split_topics(topics),
            frequency=frequency,
            timezone=timezone,
            send_hour=send_hour,
            max_topics=app.settings.max_topics_per_member,
            follows=list(follows) if follows else None,
        )
        with session_scope(app.engine) as session:
            result = members.add_member(
                session, record, now, given=given, status=status, reactivate=reactivate
            )
    except members.MemberError as exc:
        raise BadInput(_worded(exc)) from None
    except members.SuppressedMember as exc:
        raise BadInput(
            f"{exc.email} is {exc.status}; refusing to reactivate (pass --reactivate if they "
            "asked to be subscribed again)"
        ) from None
    row = result.member
    if as_json:
        print_json_lines([row.as_json()])
        return
    verb = "Added" if result.created else ("Updated" if result.changed else "Unchanged")
    topics_text = "; ".join(row.topics) or "(no topics)"
    follows_text = f"; follows {'; '.join(row.follows)}" if row.follows else ""
    click.echo(f"{verb} {row.email} ({row.status}, {row.frequency}): {topics_text}{follows_text}")


@subscribers_group.command("list")
@json_option
@click.option("--status", type=click.Choice(MEMBER_STATUSES), help="Only members with this status.")
@click.option("--topic", help="Only members following this topic.")
@pass_app
def list_command(app: App, as_json: bool, status: str | None, topic: str | None) -> None:
    """List members, a batch at a time (JSON Lines with --json)."""
    with session_scope(app.engine) as session:
        rows = members.iter_members(session, status=status, topic=topic)
        if as_json:
            print_json_lines(row.as_json() for row in rows)
            return
        count = 0
        for row in rows:
            count += 1
            click.echo(
                f"{row.email:<40} {row.status:<12} {row.frequency:<6} "
                f"{row.timezone:<20} {row.send_hour:>2}h  {'; '.join(row.topics)}"
                + (f"  follows: {'; '.join(row.follows)}" if row.follows else "")
            )
        click.echo(f"{count} members", err=True)


@subscribers_group.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write here instead of standard output (contains personal data: never commit it).",
)
@pass_app
def export_command(app: App, output: Path | None) -> None:
    """Write every member as CSV in the import format, plus a status column."""
    with session_scope(app.engine) as session:
        rows = members.iter_members(session)
        if output is None:
            count = members.write_csv(rows, sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8", newline="") as stream:
                count = members.write_csv(rows, stream)
    click.echo(f"Exported {count} members" + (f" to {output}" if output else ""), err=True)


@subscribers_group.command("remove")
@click.argument("email")
@click.option(
    "--forget",
    is_flag=True,
    help="Erase the member, their topics and deliveries (GDPR erasure) instead of unsubscribing.",
)
@now_option
@pass_app
def remove_command(app: App, email: str, forget: bool, now: datetime) -> None:
    """Unsubscribe a member (kept as a suppression record), or erase them with --forget."""
    try:
        with session_scope(app.engine) as session:
            stored = members.remove_member(session, email, now, forget=forget)
    except members.MemberNotFound:
        raise BadInput(f"no such subscriber: {email}") from None
    click.echo(f"Erased {stored}" if forget else f"Unsubscribed {stored}")


COMMANDS = [subscribers_group]
