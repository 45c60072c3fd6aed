"""The one rule for every CSV cell the project writes (OWASP's CSV injection advice)."""

from __future__ import annotations

import csv
import io

import pytest

from digest.csvsafe import neutralise, restore, writer

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize("first", TRIGGERS)
def test_cells_starting_with_a_formula_character_get_an_apostrophe(first: str) -> None:
    value = f"{first}1+2"
    assert neutralise(value) == "'" + value
    assert restore(neutralise(value)) == value


@pytest.mark.parametrize(
    "value",
    ["", "plain", "'Tis", "a=b", " =x", "'=x", "''-x", "'", "@", "=", "-", "1-2", "x\r=y"],
)
def test_neutralise_then_restore_is_the_identity(value: str) -> None:
    assert restore(neutralise(value)) == value
    assert neutralise(value)[:1] not in TRIGGERS


def test_values_that_need_nothing_are_left_alone() -> None:
    for value in ("plain", "'Tis the season", "a=b", "Zoë Müller", "1-2"):
        assert neutralise(value) == value
        assert restore(value) == value


def test_writer_neutralises_every_cell() -> None:
    out = io.StringIO()
    w = writer(out, ("a", "b"))
    w.writeheader()
    w.writerow({"a": "=1+1", "b": "-x"})
    w.writerow({"a": "ok", "b": "@y"})
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [["a", "b"], ["'=1+1", "'-x"], ["ok", "'@y"]]
