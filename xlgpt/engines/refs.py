"""A1-style references: parsing and validation shared by the engines."""
from __future__ import annotations

from ..xlsx.book import col_letter
from ..xlsx.book import col_number as book_col_number

import re

from xlgpt.errors import XlgptError

MAX_ROW = 1_048_576
MAX_COL = 16_384

_CELL = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")


col_number = book_col_number  # one owner: the workbook model


col_letters = col_letter  # one owner: the workbook model


def parse_cell(ref: str) -> tuple[int, int]:
    """"B3" -> (row 3, col 2), 1-based."""
    m = _CELL.match(ref.strip())
    if not m:
        raise XlgptError(f"not a cell reference: {ref!r}")
    row, col = int(m.group(2)), col_number(m.group(1))
    if not (1 <= row <= MAX_ROW and 1 <= col <= MAX_COL):
        raise XlgptError(f"cell reference out of range: {ref!r}")
    return row, col


def parse_range(ref: str) -> tuple[int, int, int, int]:
    """"B3:D9" or "B3" -> (row1, col1, row2, col2), 1-based and normalised so row1 <= row2, col1 <= col2."""
    if not isinstance(ref, str):
        raise XlgptError(f"not a range reference: {ref!r}")
    parts = ref.split(":")
    if len(parts) == 1:
        r, c = parse_cell(parts[0])
        return r, c, r, c
    if len(parts) != 2:
        raise XlgptError(f"not a range reference: {ref!r}")
    r1, c1 = parse_cell(parts[0])
    r2, c2 = parse_cell(parts[1])
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


def cell_name(row: int, col: int) -> str:
    return f"{col_letters(col)}{row}"
