"""The workbook model: sheets, cells, formulas, numeric blocks, names, styles and charts.

It knows nothing about XML; `writer.py` turns it into an .xlsx file. Coordinates are 1-based (row, col).
Numeric blocks may be given lazily (a callable returning the array) so that a 124M-parameter
workbook never holds more than one tensor in memory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

MAX_ROWS, MAX_COLS = 1_048_576, 16_384
_NAME_RE = re.compile(r"^[A-Za-z_\\][A-Za-z0-9_.]*$")
_CELL_LIKE = re.compile(r"^([A-Za-z]{1,3}[0-9]+|[Rr][0-9]*[Cc]?[0-9]*)$")


def col_letter(col: int) -> str:
    s = ""
    while col:
        col, rem = divmod(col - 1, 26)
        s = chr(65 + rem) + s
    return s


def col_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def cell_ref(row: int, col: int, absolute: bool = False) -> str:
    if absolute:
        return f"${col_letter(col)}${row}"
    return f"{col_letter(col)}{row}"


def quote_sheet(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) and not _CELL_LIKE.match(name):
        return name
    return "'" + name.replace("'", "''") + "'"


@dataclass(frozen=True)
class Range:
    """A rectangle on one sheet; `name` is its defined name when it has one."""

    sheet: str
    r1: int
    c1: int
    r2: int
    c2: int
    name: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r2 - self.r1 + 1, self.c2 - self.c1 + 1)

    @property
    def a1(self) -> str:
        """Relative A1 reference without the sheet, e.g. "C5:D9"."""
        if (self.r1, self.c1) == (self.r2, self.c2):
            return cell_ref(self.r1, self.c1)
        return f"{cell_ref(self.r1, self.c1)}:{cell_ref(self.r2, self.c2)}"

    @property
    def abs(self) -> str:
        """Absolute reference with the sheet, e.g. 'block_0'!$C$5:$D$9."""
        a = cell_ref(self.r1, self.c1, True)
        if (self.r1, self.c1) != (self.r2, self.c2):
            a += ":" + cell_ref(self.r2, self.c2, True)
        return f"{quote_sheet(self.sheet)}!{a}"

    @property
    def ref(self) -> str:
        """How formulas should refer to this range: its defined name if it has one."""
        return self.name or self.abs

    def local(self, absolute: bool = True) -> str:
        """Reference without the sheet (for formulas on the same sheet)."""
        a = cell_ref(self.r1, self.c1, absolute)
        if (self.r1, self.c1) != (self.r2, self.c2):
            a += ":" + cell_ref(self.r2, self.c2, absolute)
        return a

    def cell(self, i: int, j: int = 0) -> "Range":
        """0-based cell (i, j) inside the range."""
        return Range(self.sheet, self.r1 + i, self.c1 + j, self.r1 + i, self.c1 + j)

    def rows(self, i: int, n: int = 1) -> "Range":
        return Range(self.sheet, self.r1 + i, self.c1, self.r1 + i + n - 1, self.c2)

    def cols(self, j: int, n: int = 1) -> "Range":
        return Range(self.sheet, self.r1, self.c1 + j, self.r2, self.c1 + j + n - 1)

    def sub(self, i: int, j: int, n_rows: int, n_cols: int) -> "Range":
        return Range(self.sheet, self.r1 + i, self.c1 + j, self.r1 + i + n_rows - 1, self.c1 + j + n_cols - 1)

    def named(self, name: str) -> "Range":
        return Range(self.sheet, self.r1, self.c1, self.r2, self.c2, name)


@dataclass(frozen=True)
class Style:
    """A cell format. Colours are RRGGBB hex strings."""

    bold: bool = False
    italic: bool = False
    color: str | None = None
    size: float | None = None
    font: str | None = None
    underline: bool = False
    fill: str | None = None
    num_fmt: str | None = None
    wrap: bool = False
    halign: str | None = None
    valign: str | None = None
    border: bool = False
    indent: int = 0


class _NoValue:
    """The expected value of a formula nobody stated (verify fails on it)."""

    def __repr__(self) -> str:
        return "NOVALUE"


NOVALUE = _NoValue()


@dataclass(frozen=True)
class Same:
    """Expected value: whatever the cell(s) of `rng` hold (a label that repeats another cell, say)."""

    rng: Range


@dataclass(frozen=True)
class Between:
    """Expected value: any number in [lo, hi) (RAND()); `at`: the value shown before any recalculation."""

    lo: float
    hi: float
    at: float | None = None


@dataclass
class Formula:
    text: str  # with or without the leading "="
    value: object = NOVALUE  # what the formula computes: a number, str, bool, Same, Between


@dataclass
class ArrayFormula:
    rng: Range
    text: str
    value: object = NOVALUE  # an array of rng's shape (or a scalar for one cell), or Same


@dataclass
class Block:
    """A rectangle of numeric constants (weights). `data` may be a callable returning the array."""

    row: int
    col: int
    shape: tuple[int, int]
    data: Union[np.ndarray, Callable[[], np.ndarray]]
    style: Style | None = None

    def array(self) -> np.ndarray:
        a = self.data() if callable(self.data) else self.data
        a = np.asarray(a)
        if a.ndim == 1:
            a = a.reshape(1, -1)
        if a.shape != self.shape:
            raise ValueError(f"block data has shape {a.shape}, expected {self.shape}")
        return a


@dataclass
class ColorScale:
    rng: Range
    colors: tuple[str, ...] = ("5A8AC6", "FFFFFF", "F8696B")  # blue - white - red
    points: tuple[str, ...] = ("min", "percentile:50", "max")


@dataclass
class BarChart:
    """A clustered bar chart of `values` (one column) against `categories`, anchored at a cell."""

    title: str
    categories: Range
    values: Range
    anchor: tuple[int, int]
    size: tuple[int, int] = (16, 18)  # (columns, rows) covered
    horizontal: bool = True
    y_title: str = ""


@dataclass
class Sheet:
    name: str
    cells: dict[tuple[int, int], tuple[object, Style | None]] = field(default_factory=dict)
    arrays: list[ArrayFormula] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    widths: dict[int, float] = field(default_factory=dict)
    col_styles: dict[int, Style] = field(default_factory=dict)  # format of empty cells (e.g. array outputs)
    default_style_from: tuple[int, Style] | None = None  # this column and all to its right
    freeze: tuple[int, int] | None = None  # (rows, cols) frozen above/left
    links: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)  # cell -> (location, tooltip)
    color_scales: list[ColorScale] = field(default_factory=list)
    charts: list[BarChart] = field(default_factory=list)
    merged: list[Range] = field(default_factory=list)
    tab_color: str | None = None
    zoom: int | None = None
    hidden: bool = False

    # ---- writing cells -------------------------------------------------------------------
    def _check(self, row: int, col: int) -> None:
        if not (1 <= row <= MAX_ROWS and 1 <= col <= MAX_COLS):
            raise ValueError(f"{self.name}: cell ({row}, {col}) is outside Excel's grid")

    def write(self, row: int, col: int, value, style: Style | None = None) -> Range:
        """A constant: str is stored as text (never a formula), numbers and bools as themselves."""
        self._check(row, col)
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        self.cells[(row, col)] = (value, style)
        return Range(self.name, row, col, row, col)

    def formula(self, row: int, col: int, text: str, style: Style | None = None, value=NOVALUE) -> Range:
        """A formula and the value it must compute (verify's expectation, the file's cached value)."""
        self._check(row, col)
        self.cells[(row, col)] = (Formula(text, _scalar(value)), style)
        return Range(self.name, row, col, row, col)

    def array(self, rng: Range, text: str, style: Style | None = None, value=NOVALUE) -> Range:
        """A legacy array formula over the declared range (`{=...}` in Excel), and the values it must compute.

        `style` formats only the anchor cell; the rest of the range takes its column's format
        (column_style), so no empty cells need writing (the `formulas` engine pays per cell)."""
        assert rng.sheet == self.name
        self._check(rng.r2, rng.c2)
        if value is not NOVALUE and not isinstance(value, (Same, Between)):
            a = np.asarray(value)
            if a.size == 1 and rng.shape != (1, 1) and a.ndim == 0:
                raise ValueError(f"{self.name}!{rng.a1}: one value for a {rng.shape} array formula")
            value = a.reshape(rng.shape)
        self.arrays.append(ArrayFormula(rng, text, value))
        if style is not None:
            value, _ = self.cells.get((rng.r1, rng.c1), (None, None))
            self.cells[(rng.r1, rng.c1)] = (value, style)
        return rng

    def column_style(self, col: int, style: Style, last: int | None = None) -> None:
        for c in range(col, (last or col) + 1):
            self.col_styles[c] = style

    def style_of_column(self, col: int) -> Style | None:
        """The format an empty cell of this column takes (column_style, or the default from a column on)."""
        if col in self.col_styles:
            return self.col_styles[col]
        if self.default_style_from and col >= self.default_style_from[0]:
            return self.default_style_from[1]
        return None

    def column_runs(self) -> list[tuple[int, int, float | None, Style | None]]:
        """<col> runs: (first, last, width, style), merging equal neighbours."""
        cols = sorted(set(self.widths) | set(self.col_styles))
        start, default = (self.default_style_from or (MAX_COLS + 1, None))
        runs: list[list] = []
        for c in cols:
            style = self.col_styles.get(c, default if c >= start else None)
            item = [c, c, self.widths.get(c), style]
            if runs and runs[-1][1] == c - 1 and runs[-1][2:] == item[2:]:
                runs[-1][1] = c
            else:
                runs.append(item)
        last = max(cols) if cols else 0
        if default is not None:
            first = max(start, last + 1)
            if runs and runs[-1][1] == first - 1 and runs[-1][2:] == [None, default]:
                runs[-1][1] = MAX_COLS
            elif first <= MAX_COLS:
                runs.append([first, MAX_COLS, None, default])
        return [tuple(r) for r in runs]

    def block(self, row: int, col: int, shape: tuple[int, int], data, style: Style | None = None) -> Range:
        self._check(row + shape[0] - 1, col + shape[1] - 1)
        self.blocks.append(Block(row, col, tuple(shape), data, style))
        return Range(self.name, row, col, row + shape[0] - 1, col + shape[1] - 1)

    def style_range(self, rng: Range, style: Style) -> None:
        """Give empty cells of a range a format (e.g. the number format of an array formula's output)."""
        for r in range(rng.r1, rng.r2 + 1):
            for c in range(rng.c1, rng.c2 + 1):
                value, _ = self.cells.get((r, c), (None, None))
                self.cells[(r, c)] = (value, style)

    def link(self, row: int, col: int, sheet: str, cell: str = "A1", tooltip: str = "") -> None:
        self.links[(row, col)] = (f"{quote_sheet(sheet)}!{cell}", tooltip)

    def width(self, col: int, width: float, last: int | None = None) -> None:
        for c in range(col, (last or col) + 1):
            self.widths[c] = width


def _scalar(value):
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"one formula cell, {value.size} values")
        value = value.reshape(()).item()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    return value


class Book:
    def __init__(self) -> None:
        self.sheets: list[Sheet] = []
        self.names: dict[str, Range] = {}
        self.active = 0
        self.manual_calc = False  # Excel opens it without calculating (F9 does): for books too big to recalculate at once

    def sheet(self, name: str) -> Sheet:
        for s in self.sheets:
            if s.name == name:
                return s
        if len(name) > 31 or re.search(r"[\[\]:*?/\\]", name):
            raise ValueError(f"invalid sheet name {name!r}")
        s = Sheet(name)
        self.sheets.append(s)
        return s

    def reorder(self, names: list[str]) -> None:
        """Put the sheets in this order (sheets not listed keep their relative order, at the end)."""
        rank = {n: i for i, n in enumerate(names)}
        self.sheets.sort(key=lambda s: rank.get(s.name, len(rank)))

    def define(self, name: str, rng: Range) -> Range:
        """A workbook-level defined name; Excel rejects duplicates and names that look like cells."""
        if not _NAME_RE.match(name) or _CELL_LIKE.match(name) or len(name) > 255:
            raise ValueError(f"invalid defined name {name!r}")
        if name.lower() in (n.lower() for n in self.names):
            raise ValueError(f"duplicate defined name {name!r}")
        self.names[name] = rng
        return rng.named(name)

    def __getitem__(self, name: str) -> Range:
        return self.names[name].named(name)

    # ---- expected values ---------------------------------------------------------------------
    def formula_cells(self):
        """Every formula of the book: (sheet, Range it fills, the value it must compute), Same resolved.

        Scalar formulas come as one-cell ranges; an array formula as its whole range."""
        for ws in self.sheets:
            for (r, c), (v, _) in ws.cells.items():
                if isinstance(v, Formula):
                    yield ws.name, Range(ws.name, r, c, r, c), self.resolve(v.value, (1, 1))
            for af in ws.arrays:
                yield ws.name, af.rng, self.resolve(af.value, af.rng.shape)

    def resolve(self, value, shape):
        """An expectation as an array of `shape` (Same followed to the cells it names); numbers stay a numeric
        array (a million of them at full size), anything else becomes an object array."""
        if isinstance(value, Same):
            return self.values(value.rng).reshape(shape)
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub" and value.size == int(np.prod(shape)):
            return value.reshape(shape)
        out = np.empty(shape, dtype=object)
        if isinstance(value, np.ndarray):
            out[...] = value.reshape(shape)
        else:
            out[...] = value
        return out

    def values(self, rng: Range) -> np.ndarray:
        """What the cells of `rng` hold or compute: constants, formula expectations (NOVALUE where unknown)."""
        ws = self.sheet(rng.sheet)
        out = np.empty(rng.shape, dtype=object)
        out[...] = None
        for i in range(rng.shape[0]):
            for j in range(rng.shape[1]):
                got = ws.cells.get((rng.r1 + i, rng.c1 + j))
                if got is not None and got[0] is not None:
                    v = got[0]
                    out[i, j] = self.resolve(v.value, (1, 1))[0, 0] if isinstance(v, Formula) else v
        for af in ws.arrays:  # array outputs overlapping rng
            a = af.rng
            r1, r2 = max(a.r1, rng.r1), min(a.r2, rng.r2)
            c1, c2 = max(a.c1, rng.c1), min(a.c2, rng.c2)
            if r1 <= r2 and c1 <= c2:
                full = self.resolve(af.value, a.shape)
                out[r1 - rng.r1:r2 - rng.r1 + 1, c1 - rng.c1:c2 - rng.c1 + 1] = \
                    full[r1 - a.r1:r2 - a.r1 + 1, c1 - a.c1:c2 - a.c1 + 1]
        return out
