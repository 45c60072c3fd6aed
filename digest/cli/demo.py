"""``digest demo`` (the whole path, from any folder) and ``digest sink`` (a local SMTP sink)."""

from __future__ import annotations

import secrets
import shlex
import time
from datetime import datetime
from pathlib import Path

import click
from sqlmodel import Session

from digest import resources
from digest.cli.common import App, BadInput, WorkFailed, now_option, pass_app
from digest.clock import fixed_clock
from digest.db import session_scope
from digest.editions import Editions
from digest.ingest import load_paths, upsert_articles
from digest.ledger import first_sent
from digest.mailer import SMTPTransport
from digest.members import import_csv_file
from digest.plan import plan
from digest.send import send_due
from digest.sink import SinkServer

#: The shipped sample archive and members (package data, see ``digest.resources``).
DEMO_ARTICLES = "examples/articles"
DEMO_MEMBERS = "subscribers/example.csv"
#: The sample archive is from March 2025; the demo lifts the age limit so it still qualifies.
DEMO_MAX_AGE_DAYS = 36500
#: The demo's sender address (its members are at example domains, so none is needed; it shows
#: where the footer puts one).
DEMO_POSTAL_ADDRESS = "1 Example Street, Springfield 12345, Exampleland"


@click.command("demo")
@now_option
@pass_app
def demo_command(app: App, now: datetime) -> None:
    """Import the sample archive and members, send everyone a digest to a local SMTP server."""
    data_dir = Path(app.settings.data_dir)
    mail_dir = data_dir / "demo-mail"
    secret = app.settings.secret_key or secrets.token_urlsafe(32)
    settings = app.settings.replace(
        secret_key=secret,
        max_age_days=DEMO_MAX_AGE_DAYS,
        transport="smtp",
        smtp_security="none",
        smtp_username="",
        smtp_password="",
        postal_address=app.settings.postal_address or DEMO_POSTAL_ADDRESS,
    )
    engine = app.engine
    click.echo(f"store: {engine.url.render_as_string(hide_password=True)}")

    articles, members = resources.path(DEMO_ARTICLES), resources.path(DEMO_MEMBERS)
    batch = load_paths([articles], now=now, max_bytes=settings.max_import_bytes)
    if batch.errors:
        raise BadInput("\n".join(str(e) for e in batch.errors))
    with session_scope(engine) as session:
        counts = upsert_articles(session, batch.records, now)
    click.echo(f"articles: {len(batch.records)} from {articles} ({counts})")

    with session_scope(engine) as session:
        report = import_csv_file(
            session,
            members,
            now,
            max_bytes=settings.max_import_bytes,
            max_topics=settings.max_topics_per_member,
        )
    click.echo(f"members: {report.summary()} from {members}")

    with SinkServer(mail_dir) as sink:
        click.echo(f"SMTP server listening on {sink.host}:{sink.port}, saving to {mail_dir}/")
        settings = settings.replace(smtp_host=sink.host, smtp_port=sink.port)
        planned = plan(engine, settings, now, force=True)
        sent = send_due(
            engine,
            settings,
            lambda: SMTPTransport.from_settings(settings),
            Editions(settings),
            fixed_clock(now),
        )
        deadline = time.monotonic() + 5
        while len(sink.handler.saved) < sent.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        saved = list(sink.handler.saved)

    click.echo(
        f"editions: planned {planned.planned}, already planned {planned.already_planned}, "
        f"skipped empty {planned.skipped_empty}; sent {sent.sent}, failed {sent.failed}"
    )
    click.echo(f"received {len(saved)} messages in {mail_dir}/:")
    for path in saved:
        click.echo(f"  {path}")
    key = "" if app.settings.secret_key else f"DIGEST_SECRET_KEY={shlex.quote(secret)} "
    with Session(engine) as session:
        row = first_sent(session)
    click.echo("open an .eml file in a mail client, or list and preview what was sent:")
    click.echo("  digest deliveries list")
    if row is not None:
        email, edition = row
        click.echo(
            f"  {key}digest preview --email {email} --edition {edition} "
            "--format html --out preview.html"
        )
        click.echo(f"  {key}digest preview --email {email} --edition {edition} --format text")
    web = f"http://{app.settings.web_host}:{app.settings.web_port}/subscribe"
    click.echo(f"and the web app (the subscribe page at {web}, Ctrl-C to stop):")
    click.echo(f"  {key}digest web")
    if sent.failed or sent.retry:
        raise WorkFailed(f"{sent.failed} failed, {sent.retry} to retry")


@click.command("sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--dir", "folder", default=None, help="Where to save messages [data_dir/mail].")
@pass_app
def sink_command(app: App, host: str, port: int, folder: str | None) -> None:
    """Run a local SMTP server that saves every message it receives as an .eml file."""
    target = Path(folder or Path(app.settings.data_dir) / "mail")
    try:
        server = SinkServer(target, host=host, port=port).start()
    except OSError as exc:  # the port is taken, or the address is not this host's
        raise WorkFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    with server as sink:
        click.echo(f"SMTP sink on {sink.host}:{sink.port}, saving to {target}/ (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo(f"stopped; {len(sink.handler.saved)} messages saved")


COMMANDS = [demo_command, sink_command]
