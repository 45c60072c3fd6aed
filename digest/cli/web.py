"""``digest web``: serve the member, editor and operator pages with uvicorn."""

from __future__ import annotations

import click

from digest.cli.common import App, BadInput, WorkFailed, pass_app


def split_ips(value: str | None) -> tuple[str, ...] | None:
    """``--forwarded-allow-ips`` as a tuple (None: the setting decides)."""
    if value is None:
        return None
    return tuple(ip.strip() for ip in value.split(",") if ip.strip())


forwarded_allow_ips_option = click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    help="Comma-separated addresses (or networks) of the reverse proxies whose "
    "X-Forwarded-For and X-Forwarded-Proto are believed; '*' for any. Default: none, so "
    "the client address is the connection's [forwarded_allow_ips].",
)


@click.command("web")
@click.option("--host", default=None, help="Address to listen on (default: setting web_host).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port (default: setting web_port; 0: any free port, logged at start).",
)
@forwarded_allow_ips_option
@pass_app
def web_command(
    app: App, host: str | None, port: int | None, forwarded_allow_ips: str | None
) -> None:
    """Serve the web app: subscribe, preferences, unsubscribe, editor previews, /metrics.

    Put it behind a TLS reverse proxy that passes the Host header, name that proxy with
    --forwarded-allow-ips, and point DIGEST_BASE_URL at the public URL so the links in
    every email open it. Add editors with `digest editors add` for the newsroom, and
    DIGEST_METRICS_TOKEN or metrics_listen to serve /metrics.
    """
    from digest.web import create_app
    from digest.web.serving import WebServers

    try:
        asgi = create_app(app.settings, app.engine)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    servers = WebServers(
        asgi,
        app.settings,
        host=host,
        port=port,
        forwarded_allow_ips=split_ips(forwarded_allow_ips),
        log_level="warning" if app.quiet else "info",
    )
    try:
        servers.run()
    except RuntimeError as exc:
        raise WorkFailed(str(exc)) from None


COMMANDS = [web_command]
