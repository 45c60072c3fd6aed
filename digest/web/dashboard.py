"""The newsroom's dashboard (``GET /editor``) and its tables as CSV
(``/editor/dashboard/<table>.csv``): a thin door over ``digest.dashboard``."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.dashboard import Dashboard, build
from digest.web.audit_pages import csv_response
from digest.web.context import WebContext, web_context
from digest.web.editor import editor_page


def _build(ctx: WebContext) -> Dashboard:
    ctx.clicks.flush()  # what this process counted is written before it is read
    return build(ctx.engine, ctx.settings, ctx.clock())


async def dashboard_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    board = await run_in_threadpool(_build, ctx)
    return editor_page(request, ctx, signed, "editor/dashboard.html", {"board": board})


async def dashboard_csv(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.editor.require(request)
    name = str(request.path_params["name"])
    board = await run_in_threadpool(_build, ctx)
    table = board.tables.get(name)
    if table is None:
        return ctx.message(
            request, "No such table", "The dashboard has no table of that name.", 404
        )
    return csv_response(f"{name}.csv", table.columns, table.rows)


ROUTES = [
    Route("/editor", dashboard_page, methods=["GET"]),
    Route("/editor/dashboard/{name}.csv", dashboard_csv, methods=["GET"]),
]
