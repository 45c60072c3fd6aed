"""``digest scheduler``, ``digest serve`` and ``digest status``: running unattended."""

from __future__ import annotations

import json
import logging
import signal
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from digest import ledger, notify
from digest.brake import describe
from digest.cli.common import (
    App,
    BadInput,
    WorkFailed,
    json_option,
    now_option,
    pass_app,
    require_postal_address,
)
from digest.cli.web import forwarded_allow_ips_option, split_ips
from digest.scheduler import Service, Source, sources_from_config, status
from digest.settings import Settings, SettingsError, config_sources, load_settings

log = logging.getLogger("digest.service")


def _sources(config_path: str | None) -> list[Source]:
    if not config_path:
        return []
    return sources_from_config(config_sources(config_path), Path(config_path).resolve().parent)


def _service(app: App, tick: float | None) -> Service:
    def reload() -> tuple[Settings, list[Source]]:
        settings = load_settings(
            app.config_path, overrides={"database_url": app.settings.database_url}
        )
        return settings, _sources(app.config_path)

    try:
        sources = _sources(app.config_path)
        return Service(
            app.engine,
            app.settings,
            sources,
            tick_seconds=tick,
            reload=reload,
        )
    except (ValueError, SettingsError) as exc:
        raise BadInput(str(exc)) from None


def _install_signals(service: Service, extra_stop: list[Any] | None = None) -> None:
    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping (in-flight work finishes first)", signal.Signals(signum).name)
        notify.stopping()
        service.stop()
        for stop in extra_stop or []:
            stop()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading the configuration")
        service.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


_tick_option = click.option(
    "--tick",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between planning/sending runs [tick_seconds].",
)


@click.command("scheduler")
@_tick_option
@pass_app
def scheduler_command(app: App, tick: float | None) -> None:
    """Run the scheduler: ingest sources, plan due editions, send them, until stopped.

    A second scheduler on the same store waits as a standby and takes over when the active one
    dies. SIGTERM/SIGINT finish the work in flight and exit 0; SIGHUP reloads the config.
    """
    require_postal_address(app)
    service = _service(app, tick)
    _install_signals(service)
    notify.ready(f"scheduler {service.holder}")
    raise SystemExit(service.run())


@click.command("serve")
@_tick_option
@click.option("--host", default=None, help="Web app address [web_host].")
@click.option("--port", type=int, default=None, help="Web app port [web_port].")
@forwarded_allow_ips_option
@pass_app
def serve_command(
    app: App,
    tick: float | None,
    host: str | None,
    port: int | None,
    forwarded_allow_ips: str | None,
) -> None:
    """The scheduler and the web app in one process (what the systemd unit runs)."""
    from digest.web import create_app
    from digest.web.serving import WebServers

    require_postal_address(app)
    service = _service(app, tick)
    web = WebServers(
        create_app(app.settings, engine=app.engine),
        app.settings,
        host=host,
        port=port,
        forwarded_allow_ips=split_ips(forwarded_allow_ips),
        log_level="warning",
    )
    _install_signals(service, [web.request_stop])
    try:
        web.start()
    except RuntimeError as exc:  # e.g. the port is taken: no half a service for systemd
        raise WorkFailed(str(exc)) from None
    where = ", ".join(f"http://{a}" for a in web.addresses)
    log.info("web app on %s", where)
    notify.ready(f"web app on {where}; scheduler {service.holder}")
    code = service.run()
    web.stop()
    raise SystemExit(code)


#: Processes `digest status` lists (the most recently heard from); --json lists them all.
STATUS_PROCESSES = 20


@click.command("status")
@now_option
@json_option
@pass_app
def status_command(app: App, now: datetime, as_json: bool) -> None:
    """The active scheduler, each job's next run, the queue, the last tick and the last error."""
    info = status(app.engine, now, app.settings.complaint_window, app.settings.heartbeat_seconds)
    if as_json:
        click.echo(json.dumps(info, default=str))
        return
    who = f"{info['host']} pid {info['pid']}" if info["active"] else "none (no live lease)"
    click.echo(f"active scheduler: {who}")
    click.echo("jobs:")
    for name, next_run in sorted(info["jobs"].items()):
        runs = info["runs"].get(name, {})
        last = f", last run {runs['at']} ({runs.get('runs', 0)} runs)" if runs else ""
        click.echo(f"  {name:<7} next {next_run or 'paused'}{last}")
    if not info["jobs"]:
        click.echo("  (none yet: start `digest scheduler`)")
    queue = info["queue"]
    click.echo(
        f"queue: {queue[ledger.PLANNED]} planned, {queue[ledger.RETRY]} to retry, "
        f"{queue[ledger.SENDING]} sending"
    )
    click.echo(f"last tick: {info['last_tick_at'] or '-'}")
    click.echo(f"last error: {info['last_error'] or '-'} {info['last_error_at'] or ''}".rstrip())
    click.echo("processes:" if info["processes"] else "processes: none has reported yet")
    shown = info["processes"][:STATUS_PROCESSES]
    for proc in shown:
        seen = "" if proc["alive"] else f" (silent since {proc['updated_at']})"
        doing = f": {proc['detail']}" if proc["detail"] else ""
        click.echo(f"  {proc['kind']:<9} {proc['id']}  {proc['state']}{doing}{seen}")
        if proc["last_error"]:
            click.echo(f"            last error {proc['last_error_at']}: {proc['last_error']}")
    if len(info["processes"]) > len(shown):
        more = len(info["processes"]) - len(shown)
        click.echo(f"  ... and {more} more, heard from longer ago (--json lists them all)")
    sending = info["sending"]
    if sending["paused"]:
        click.echo(f"sending: PAUSED since {sending['paused_at']}: {describe(sending['reason'])}")
    else:
        click.echo("sending: on")
    rates = info["rates"]
    window, limits = rates["window"], app.settings
    click.echo(
        f"brake window (last {window['deliveries']} deliveries): "
        f"complaints {window['complaint_rate']:.2%} (limit {limits.complaint_rate_limit:.2%}), "
        f"hard bounces {window['bounce_rate']:.2%} (limit {limits.bounce_rate_limit:.2%})"
    )
    week = rates["last_7_days"]
    click.echo(
        f"last 7 days: {week['attempted']} deliveries, bounce rate {week['bounce_rate']:.2%}, "
        f"complaint rate {week['complaint_rate']:.2%}"
    )
    for edition, r in rates["by_edition"].items():
        click.echo(
            f"  {edition:<18} {r['attempted']} deliveries, bounce rate {r['bounce_rate']:.2%}, "
            f"complaint rate {r['complaint_rate']:.2%}"
        )


COMMANDS = [scheduler_command, serve_command, status_command]
