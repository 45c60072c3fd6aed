"""The audit log page (``/editor/audit``) and its CSV, and the one way editor pages answer
with a CSV file (``csv_response``): every cell through ``digest.csvsafe``."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import csvsafe
from digest.editors import audit
from digest.web.context import web_context
from digest.web.editor import editor_page


def csv_response(
    filename: str, columns: Sequence[str], rows: Iterable[Sequence[Any] | dict[str, Any]]
) -> Response:
    """A CSV download; formula-like cells neutralised (``csvsafe``)."""
    stream = io.StringIO()
    out = csvsafe.writer(stream, columns)
    out.writeheader()
    for row in rows:
        out.writerow(row if isinstance(row, dict) else dict(zip(columns, row, strict=True)))
    safe_name = "".join(c for c in filename if c.isalnum() or c in "-_.") or "export.csv"
    return Response(
        stream.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe_name}"'},
    )


def _entries(request: Request) -> list[Any]:
    with Session(web_context(request).engine) as session:
        return audit.recent(session, limit=500)


async def audit_page(request: Request) -> Response:
    ctx = web_context(request)
    signed = await ctx.editor.require(request)
    entries = await run_in_threadpool(_entries, request)
    return editor_page(request, ctx, signed, "editor/audit.html", {"entries": entries})


def _all_rows(request: Request) -> list[tuple[str, str, str, str, str]]:
    with Session(web_context(request).engine) as session:
        return list(audit.rows(session))


async def audit_csv(request: Request) -> Response:
    ctx = web_context(request)
    await ctx.editor.require(request)
    rows = await run_in_threadpool(_all_rows, request)
    return csv_response("audit-log.csv", audit.AUDIT_COLUMNS, rows)


ROUTES = [
    Route("/editor/audit", audit_page, methods=["GET"]),
    Route("/editor/audit.csv", audit_csv, methods=["GET"]),
]
