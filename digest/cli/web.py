"""``digest web``: serve the member, editor and operator pages with uvicorn."""

from __future__ import annotations

import click

from digest.cli.common import App, BadInput, pass_app


@click.command("web")
@click.option("--host", default=None, help="Address to listen on (default: setting web_host).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port (default: setting web_port; 0: any free port, logged at start).",
)
@pass_app
def web_command(app: App, host: str | None, port: int | None) -> None:
    """Serve the web app: subscribe, preferences, unsubscribe, editor previews, /metrics.

    Put it behind a TLS reverse proxy and point DIGEST_BASE_URL at the public URL so the
    links in every email open it. Set DIGEST_EDITOR_PASSWORD to enable the editor pages.
    """
    import uvicorn

    from digest.web import create_app

    try:
        asgi = create_app(app.settings, app.engine)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    uvicorn.run(
        asgi,
        host=host or app.settings.web_host,
        port=app.settings.web_port if port is None else port,
        proxy_headers=True,
        log_level="warning" if app.quiet else "info",
    )


COMMANDS = [web_command]
