"""CSV cells that a spreadsheet shows as text: the one rule for every CSV the project writes.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula (tab and
carriage return can hide such a start), so a name typed into a public form could become a
``=HYPERLINK(...)`` in the operator's export. OWASP's advice is followed: such a cell is
written with a leading apostrophe, which spreadsheets show as text and do not display.

The rule is reversible, so an export imports back to the same values: an apostrophe is added
to a value that starts with a trigger character after any apostrophes of its own
(``'=x`` becomes ``''=x``), and readers take exactly one away from such cells only. A value
like ``'Tis`` needs nothing and is left as it is, both ways.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

#: What a spreadsheet may read as the start of a formula (OWASP: = + - @ tab CR).
TRIGGERS = "=+-@\t\r"
_NEEDS_QUOTE = re.compile(r"'*[=+\-@\t\r]")
_QUOTED = re.compile(r"'+[=+\-@\t\r]")


def neutralise(value: str) -> str:
    """The cell to write for ``value``: itself, or with one apostrophe in front."""
    return "'" + value if _NEEDS_QUOTE.match(value) else value


def restore(cell: str) -> str:
    """The value a neutralised cell stands for (``restore(neutralise(v)) == v``)."""
    return cell[1:] if _QUOTED.match(cell) else cell


class SafeDictWriter(csv.DictWriter):  # type: ignore[type-arg]
    """``csv.DictWriter`` whose every cell goes through :func:`neutralise`."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: _cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


def _cell(value: Any) -> Any:
    return neutralise(value) if isinstance(value, str) else value


def writer(stream: IO[str], fieldnames: Iterable[str]) -> SafeDictWriter:
    """A CSV writer for ``stream`` with the project's dialect (``\\n`` line ends)."""
    return SafeDictWriter(stream, fieldnames=list(fieldnames), lineterminator="\n")
