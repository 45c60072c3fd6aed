"""The newsroom's articles before they go: list and search, edit (validated as an import),
hold until a time, release, retract; upload article files or add a feed source.

A thin door: validation is the import's (``ingest``), holds and retractions are the
catalog's, and every change is written with its audit entry in one transaction.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import catalog
from digest.db import session_scope
from digest.editors import SignedIn, audit
from digest.ingest.feeds import add_source, read_feed, remove_source, stored_sources
from digest.ingest.load import ImportBatch, kind_for, parse_bytes
from digest.ingest.records import RecordError
from digest.ingest.store import edit_article, upsert_articles
from digest.web.context import WebContext, web_context
from digest.web.editor import editor_form, editor_page
from digest.web.security import CSRF_FIELD, editor_binding

STATES = (catalog.OFFERED, catalog.HELD, catalog.RETRACTED)


# ------------------------------------------------------------------ form fields -> raw record


def key_points_of(text: str) -> list[str]:
    """Paragraphs: separated by a blank line."""
    return [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]


def topics_of(text: str) -> list[str]:
    """Topics: separated by commas or lines."""
    return [t.strip() for t in re.split(r"[,\n]", text) if t.strip()]


def mentions_of(text: str) -> list[dict[str, str]]:
    """One mention a line: ``Name | description | https://url`` (the last two optional)."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        mention = {"name": parts[0], "description": parts[1] if len(parts) > 1 else ""}
        if len(parts) > 2 and parts[2]:
            mention["url"] = parts[2]
        out.append(mention)
    return out


def mentions_text(view: Any) -> str:
    lines = []
    for m in view.mentions:
        line = m.name + (f" | {m.description}" if m.description or m.url else "")
        lines.append(line + (f" | {m.url}" if m.url else ""))
    return "\n".join(lines)


def parse_until(value: str) -> datetime | None:
    """A hold's end from the form (``YYYY-MM-DDTHH:MM``, UTC), or None if not a time."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# ------------------------------------------------------------------ the list


def _list(ctx: WebContext, query: str, state: str, page: int) -> tuple[list[Any], int]:
    with Session(ctx.engine) as session:
        return catalog.search_articles(session, ctx.clock(), query=query, state=state, page=page)


async def articles_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    params = request.query_params
    query = str(params.get("q") or "")[:200]
    state = str(params.get("state") or "")
    state = state if state in STATES else ""
    try:
        page = max(1, min(int(str(params.get("page") or "1")), 100_000))
    except ValueError:
        page = 1
    rows, total = await run_in_threadpool(_list, ctx, query, state, page)
    pages = max(1, -(-total // catalog.PAGE_SIZE))

    def page_link(n: int) -> str:
        return "/editor/articles?" + urlencode({"q": query, "state": state, "page": n})

    return editor_page(
        request,
        ctx,
        signed,
        "editor/articles.html",
        {
            "rows": rows,
            "total": total,
            "query": query,
            "state": state,
            "states": STATES,
            "page": page,
            "pages": pages,
            "prev_link": page_link(page - 1) if page > 1 else "",
            "next_link": page_link(page + 1) if page < pages else "",
        },
    )


# ------------------------------------------------------------------ one article


def _article_id(request: Request) -> int:
    try:
        return int(request.path_params["article_id"])
    except (KeyError, ValueError):
        return -1


def _load(ctx: WebContext, article_id: int) -> tuple[Any, Any] | None:
    with Session(ctx.engine) as session:
        try:
            return catalog.article_for_editing(session, article_id)
        except LookupError:
            return None


def _article_page(
    request: Request,
    ctx: WebContext,
    signed: SignedIn,
    article: Any,
    view: Any,
    *,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
    notice: str = "",
    status_code: int = 200,
) -> Response:
    form = values or {
        "title": article.title,
        "summary": article.summary or "",
        "key_points": "\n\n".join(article.key_points),
        "topics": ", ".join(view.topics),
        "mentions": mentions_text(view),
    }
    return editor_page(
        request,
        ctx,
        signed,
        "editor/article.html",
        {
            "article": article,
            "state": catalog.article_state(article, ctx.clock()),
            "form": form,
            "errors": errors or [],
            "notice": notice,
            "now": ctx.clock(),
        },
        status_code=status_code,
    )


async def article_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    found = await run_in_threadpool(_load, ctx, _article_id(request))
    if found is None:
        return ctx.message(request, "No such article", "There is no article with this number.", 404)
    notice = {
        "saved": "Saved. The next preview and every edition not yet sent show the change.",
        "held": "Held: no edition planned before the hold ends takes this article.",
        "released": "Released: the next editions take this article.",
        "retracted": "Retracted: no edition takes this article any more.",
    }.get(str(request.query_params.get("done") or ""), "")
    return _article_page(request, ctx, signed, *found, notice=notice)


def _save(
    ctx: WebContext, signed: SignedIn, article_id: int, changes: dict[str, Any]
) -> list[RecordError]:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        record, errors = edit_article(session, article_id, changes, now)
        if record is None:
            return errors
        audit.record(
            session, signed.email, "article-edit", record.url, now, ", ".join(sorted(changes))
        )
    return []


async def article_save(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    form = await editor_form(request, signed)
    article_id = _article_id(request)
    values = {
        k: str(form.get(k) or "")[:200_000]
        for k in ("title", "summary", "key_points", "topics", "mentions")
    }
    changes: dict[str, Any] = {
        "title": values["title"],
        "summary": values["summary"].strip() or None,
        "key_points": key_points_of(values["key_points"]),
        "topics": topics_of(values["topics"]),
        "mentions": mentions_of(values["mentions"]),
    }
    try:
        errors = await run_in_threadpool(_save, ctx, signed, article_id, changes)
    except LookupError:
        return ctx.message(request, "No such article", "There is no article with this number.", 404)
    if not errors:
        return RedirectResponse(f"/editor/articles/{article_id}?done=saved", status_code=303)
    found = await run_in_threadpool(_load, ctx, article_id)
    assert found is not None
    return _article_page(
        request,
        ctx,
        signed,
        *found,
        errors=[str(e) for e in errors],
        values=values,
        status_code=422,
    )


def _change(ctx: WebContext, signed: SignedIn, article_id: int, action: str, until: Any) -> str:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        if action == "hold":
            article = catalog.hold_article(session, article_id, until, now)
            detail = f"until {until.isoformat()}"
        elif action == "release":
            article = catalog.release_article(session, article_id, now)
            detail = ""
        else:
            article = catalog.retract_article(session, article_id, now)
            detail = ""
        audit.record(session, signed.email, f"article-{action}", article.url, now, detail)
    return {"hold": "held", "release": "released", "retract": "retracted"}[action]


async def _article_action(request: Request, action: str) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    form = await editor_form(request, signed)
    article_id = _article_id(request)
    until = None
    if action == "hold":
        until = parse_until(str(form.get("until") or ""))
        if until is None:
            return await _refuse(
                request, ctx, signed, article_id, "Hold until: not a date and time."
            )
    if action == "retract" and form.get("confirm") != "yes":
        return await _refuse(
            request,
            ctx,
            signed,
            article_id,
            "Retract: tick the box to confirm; it cannot be undone.",
        )
    try:
        done = await run_in_threadpool(_change, ctx, signed, article_id, action, until)
    except LookupError:
        return ctx.message(request, "No such article", "There is no article with this number.", 404)
    except catalog.ArticleChangeError as exc:
        return await _refuse(request, ctx, signed, article_id, str(exc))
    return RedirectResponse(f"/editor/articles/{article_id}?done={done}", status_code=303)


async def _refuse(
    request: Request, ctx: WebContext, signed: SignedIn, article_id: int, error: str
) -> Response:
    found = await run_in_threadpool(_load, ctx, article_id)
    if found is None:
        return ctx.message(request, "No such article", "There is no article with this number.", 404)
    return _article_page(request, ctx, signed, *found, errors=[error], status_code=422)


async def article_hold(request: Request) -> Response:
    return await _article_action(request, "hold")


async def article_release(request: Request) -> Response:
    return await _article_action(request, "release")


async def article_retract(request: Request) -> Response:
    return await _article_action(request, "retract")


# ------------------------------------------------------------------ upload and feed sources


def _sources(ctx: WebContext) -> list[Any]:
    with Session(ctx.engine) as session:
        return stored_sources(session)


async def _import_page(
    request: Request,
    ctx: WebContext,
    signed: SignedIn,
    *,
    errors: list[str] | None = None,
    warnings: list[str] | None = None,
    notice: str = "",
    feed_url: str = "",
    status_code: int = 200,
) -> Response:
    sources = await run_in_threadpool(_sources, ctx)
    return editor_page(
        request,
        ctx,
        signed,
        "editor/import.html",
        {
            "errors": errors or [],
            "warnings": warnings or [],
            "notice": notice,
            "sources": sources,
            "feed_url": feed_url,
            "max_upload_bytes": ctx.settings.max_upload_bytes,
        },
        status_code=status_code,
    )


async def import_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    return await _import_page(
        request, ctx, signed, notice=str(request.query_params.get("done") or "")[:200]
    )


def _write_upload(ctx: WebContext, signed: SignedIn, batch: ImportBatch, name: str) -> str:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        catalog.lock_articles(session)
        counts = upsert_articles(session, batch.records, now)
        audit.record(session, signed.email, "articles-upload", name, now, str(counts))
    return f"Imported {counts.total} articles ({counts}) from {name}."


async def upload(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    limit = ctx.settings.max_upload_bytes
    form = await request.form(max_files=1, max_fields=5, max_part_size=limit + 1)
    ctx.csrf.check(editor_binding(signed), str(form.get(CSRF_FIELD) or ""))
    upload_file = form.get("file")
    if not isinstance(upload_file, UploadFile) or not upload_file.filename:
        return await _import_page(request, ctx, signed, errors=["Choose a file."], status_code=422)
    name = re.sub(r"[^\w.\- ]", "_", upload_file.filename)[:200] or "upload"
    data = await upload_file.read(limit + 1)
    if len(data) > limit:
        error = f"{name}: file too large (over {limit} bytes)"
        return await _import_page(request, ctx, signed, errors=[error], status_code=413)
    kind = kind_for(Path(name))
    batch = ImportBatch(files=1)
    batch.extend(await run_in_threadpool(parse_bytes, data, name, ctx.clock(), kind))
    batch.reject_duplicates()
    if batch.errors or not batch.records:
        errors = [str(e) for e in batch.errors] or [f"{name}: no articles in this file"]
        errors.append("Nothing was imported: fix the file and upload it again.")
        return await _import_page(
            request, ctx, signed, errors=errors, warnings=batch.warnings, status_code=422
        )
    notice = await run_in_threadpool(_write_upload, ctx, signed, batch, name)
    return await _import_page(request, ctx, signed, notice=notice, warnings=batch.warnings)


def _add_feed(ctx: WebContext, signed: SignedIn, url: str) -> tuple[list[str], list[str], str]:
    now = ctx.clock()
    settings = ctx.settings
    batch = read_feed(url, now, settings.max_import_bytes, settings.allow_private_feed_hosts)
    if batch.errors:
        errors = [str(e) for e in batch.errors]
        return [*errors, "Nothing was added or imported."], batch.warnings, ""
    with session_scope(ctx.engine) as session:
        counts = add_source(session, url, batch, signed.email, now)
        audit.record(session, signed.email, "feed-add", url, now, str(counts))
    return [], batch.warnings, f"Added {url}; imported {counts.total} articles ({counts})."


async def feed_add(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    form = await editor_form(request, signed)
    url = str(form.get("url") or "").strip()[:2048]
    if not re.match(r"^https?://", url, re.IGNORECASE):
        error = f"{url or 'the address'}: a feed address starts with http:// or https://"
        return await _import_page(
            request, ctx, signed, errors=[error], feed_url=url, status_code=422
        )
    errors, warnings, notice = await run_in_threadpool(_add_feed, ctx, signed, url)
    status = 422 if errors else 200
    return await _import_page(
        request,
        ctx,
        signed,
        errors=errors,
        warnings=warnings,
        notice=notice,
        feed_url=url if errors else "",
        status_code=status,
    )


def _remove_feed(ctx: WebContext, signed: SignedIn, source_id: int) -> str:
    now = ctx.clock()
    with session_scope(ctx.engine) as session:
        found = remove_source(session, source_id)
        audit.record(session, signed.email, "feed-remove", found.url, now)
    return found.url


async def feed_remove(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    await editor_form(request, signed)
    try:
        source_id = int(request.path_params["source_id"])
        url = await run_in_threadpool(_remove_feed, ctx, signed, source_id)
    except (ValueError, LookupError):
        return ctx.message(request, "No such feed", "There is no such feed source.", 404)
    return RedirectResponse(
        "/editor/articles/import?" + urlencode({"done": f"Removed {url}."}), status_code=303
    )


ROUTES = [
    Route("/editor/articles", articles_page, methods=["GET"]),
    Route("/editor/articles/import", import_page, methods=["GET"]),
    Route("/editor/articles/upload", upload, methods=["POST"]),
    Route("/editor/articles/feeds", feed_add, methods=["POST"]),
    Route("/editor/articles/feeds/{source_id:int}/remove", feed_remove, methods=["POST"]),
    Route("/editor/articles/{article_id:int}", article_page, methods=["GET"]),
    Route("/editor/articles/{article_id:int}", article_save, methods=["POST"]),
    Route("/editor/articles/{article_id:int}/hold", article_hold, methods=["POST"]),
    Route("/editor/articles/{article_id:int}/release", article_release, methods=["POST"]),
    Route("/editor/articles/{article_id:int}/retract", article_retract, methods=["POST"]),
]
