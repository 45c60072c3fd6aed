"""Log lines: text, or one JSON object per line with the delivery it is about."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from digest.logs import about, configure, json_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_json_lines_carry_the_delivery_and_keep_tracebacks_inside(restore_logging: None) -> None:
    out = io.StringIO()
    configure(logging.INFO, "json", out)
    assert json_logging()
    log = logging.getLogger("digest.send")
    log.warning("delivery %s failed: %s", 7, "550 no\nsuch user", extra=about(7, "daily:x", 3))
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("render failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old thing", DeprecationWarning, stacklevel=1)
    log.debug("not at INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING" and first["logger"] == "digest.send"
    assert first["message"] == "delivery 7 failed: 550 no\nsuch user"
    assert (first["delivery_id"], first["edition"], first["member_id"]) == (7, "daily:x", 3)
    assert first["time"].endswith("+00:00")
    assert "Traceback" in second["exception"] and "ValueError: boom" in second["exception"]
    assert "delivery_id" not in second
    assert "old thing" in third["message"]


def test_text_lines(restore_logging: None) -> None:
    out = io.StringIO()
    configure(logging.INFO, "text", out)
    assert not json_logging()
    logging.getLogger("digest").info("hello %s", "there", extra=about(1))
    assert out.getvalue().rstrip().endswith("INFO digest: hello there")


def test_about_leaves_out_what_is_unknown() -> None:
    assert about(5) == {"delivery_id": 5}
    assert about(None, "weekly:2025-W13", None, job="send") == {
        "edition": "weekly:2025-W13",
        "job": "send",
    }
