"""Progress bars on stderr for long work; silent when quiet or not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from digest.plan import Progress


@contextmanager
def progress_bar(desc: str, total: int | None, quiet: bool, unit: str = "") -> Iterator[Progress]:
    enabled = not quiet and sys.stderr.isatty()
    with tqdm(
        total=total, desc=desc, unit=unit or "it", disable=not enabled, file=sys.stderr
    ) as bar:
        yield bar.update
