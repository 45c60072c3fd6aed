"""Log lines: plain text for a terminal, or one JSON object per line for a log collector.

``log_format = "json"`` (``DIGEST_LOG_FORMAT=json``) makes every record, ours and the
libraries', one JSON object on its own line: time, level, logger, message, and the delivery,
edition and member it is about where there is one (passed as ``extra=about(...)``). A
traceback, when one is logged, is a field of that object, never lines of its own.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: Record attributes carried into a JSON line when a log call sets them (``extra=``).
CONTEXT_FIELDS = ("delivery_id", "edition", "member_id", "worker", "job", "source")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER = "digest"


def about(
    delivery_id: int | None = None,
    edition: str | None = None,
    member_id: int | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra=`` of a log call about a delivery: what a JSON line names it by."""
    found = {"delivery_id": delivery_id, "edition": edition, "member_id": member_id, **more}
    return {key: value for key, value in found.items() if value is not None}


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: int, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Set the root logger's handler in ``log_format`` (replacing the one set before; a
    handler someone else added, such as a test's log capture, stays).

    Python's warnings go through logging too, so a JSON log holds nothing but JSON.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(log_format == "json")


def json_logging() -> bool:
    """Whether the root logger writes JSON lines (the CLI then prints its results as JSON)."""
    root = logging.getLogger().handlers
    return any(h.get_name() == _HANDLER and isinstance(h.formatter, JSONFormatter) for h in root)
