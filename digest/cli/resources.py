"""``digest resources list|show|merge|rename``: the people and organisations articles mention.

Resources are made by importing articles; here an editor looks at them, merges two that are
one (every article and every follower moves over) and renames one (its page keeps its
address). The rules live in ``digest.archive.store``.
"""

from __future__ import annotations

import json
from datetime import datetime

import click
from sqlmodel import Session

from digest.archive import store
from digest.catalog import articles_by_id
from digest.cli.common import App, BadInput, json_option, now_option, pass_app, print_json_lines
from digest.db import session_scope
from digest.models import RESOURCE_KINDS, Resource


@click.group("resources")
def resources_group() -> None:
    """List, show, merge and rename the people and organisations articles mention."""


def _require(session: Session, given: str, what: str = "RESOURCE") -> Resource:
    found = store.find_resource(session, given)
    if found is None:
        raise BadInput(f"{what} {given!r}: no resource has this name or slug")
    return found


@resources_group.command("list")
@click.option("--kind", type=click.Choice(RESOURCE_KINDS), help="Only resources of this kind.")
@click.option("--search", "query", metavar="TEXT", help="Only names containing TEXT.")
@json_option
@pass_app
def list_command(app: App, kind: str | None, query: str | None, as_json: bool) -> None:
    """List resources by name, with how many articles mention each."""
    with Session(app.engine) as session:
        rows = store.list_resources(session, query=query, kind=kind)
    if as_json:
        print_json_lines(r.as_json() for r in rows)
        return
    if not rows:
        click.echo("no resources")
        return
    for r in rows:
        click.echo(f"{r.slug}\t{r.name}\t{r.kind}\t{r.articles} articles")


@resources_group.command("show")
@click.argument("resource")
@json_option
@pass_app
def show_command(app: App, resource: str, as_json: bool) -> None:
    """Show one resource (by name or slug): what it is, its articles, its followers."""
    with Session(app.engine) as session:
        found = _require(session, resource)
        row = store.resource_row(session, found)
        assert found.id is not None
        ids, _total = store.article_ids(session, found.id)
        followers = store.follower_count(session, found.id)
        articles = articles_by_id(session, ids)
    listed = [articles[i] for i in ids if i in articles]
    if as_json:
        data = row.as_json() | {
            "followers": followers,
            "article_urls": [a.url for a in listed],
        }
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo(f"{row.name} ({row.kind})  /resources/{row.slug}")
    if row.description:
        click.echo(row.description)
    if row.url:
        click.echo(row.url)
    click.echo(f"{row.articles} articles, {followers} followers")
    for a in listed:
        click.echo(f"  {a.published_at.date().isoformat()}  {a.title}  {a.url}")


@resources_group.command("merge")
@click.argument("source")
@click.argument("target")
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@now_option
@pass_app
def merge_command(app: App, source: str, target: str, dry_run: bool, now: datetime) -> None:
    """Merge SOURCE into TARGET (names or slugs): SOURCE's articles, followers, names and
    address move to TARGET, and SOURCE is gone."""
    with session_scope(app.engine) as session:
        src = _require(session, source, "SOURCE")
        dst = _require(session, target, "TARGET")
        assert src.id is not None
        articles = len(store.mentioned_article_ids(session, [src.id]))
        followers = store.follower_count(session, src.id)
        names = (src.name, dst.name, dst.slug)
        if dry_run:
            session.rollback()
            click.echo(
                f"would merge {names[0]!r} into {names[1]!r}: "
                f"{articles} articles, {followers} followers (dry run)"
            )
            return
        try:
            store.merge(session, src, dst, now)
        except store.ResourceError as exc:
            raise BadInput(str(exc)) from None
    click.echo(
        f"merged {names[0]!r} into {names[1]!r} (/resources/{names[2]}): "
        f"{articles} articles, {followers} followers moved"
    )


@resources_group.command("rename")
@click.argument("resource")
@click.argument("new_name")
@now_option
@pass_app
def rename_command(app: App, resource: str, new_name: str, now: datetime) -> None:
    """Give RESOURCE (name or slug) a new name; its address and former name still find it."""
    with session_scope(app.engine) as session:
        found = _require(session, resource)
        old = found.name
        try:
            store.rename(session, found, new_name, now)
        except store.ResourceError as exc:
            raise BadInput(f"NEW_NAME: {exc}") from None
        shown = (found.name, found.slug)
    click.echo(f"renamed {old!r} to {shown[0]!r} (/resources/{shown[1]})")


COMMANDS = [resources_group]
