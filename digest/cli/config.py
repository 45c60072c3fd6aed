"""``digest config show``: the effective configuration and where each value came from."""

from __future__ import annotations

import json

import click

from digest.cli.common import App, json_option, pass_app
from digest.settings import origin, setting_names, shown_value


@click.group("config")
def config_group() -> None:
    """The configuration in effect."""


@config_group.command("show")
@json_option
@pass_app
def show_command(app: App, as_json: bool) -> None:
    """Every setting's effective value and its source: default, file (with its path),
    environment (the variable) or flag. Secrets are masked, set or not: ******** or empty;
    a password in database_url shows as ***."""
    settings = app.settings
    rows = [(key, shown_value(settings, key), origin(settings, key)) for key in setting_names()]
    if as_json:
        for key, value, source in rows:
            click.echo(json.dumps({"key": key, "value": value, "source": source}))
        return
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        click.echo(f"{key:<{width}} = {json.dumps(value, ensure_ascii=False)}  # {source}")


COMMANDS = [config_group]
