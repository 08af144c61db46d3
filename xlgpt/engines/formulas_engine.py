"""The pure-Python `formulas` package, driven cell pattern by cell pattern (formulas_graph.py): ~50 us CPU and
~700 bytes a cell, so up to the default workbook and a little beyond; bigger ones are refused with an estimate."""
from __future__ import annotations

import os
import sys
import time
import zipfile

import numpy as np

from xlgpt.engines.base import CellError, Session
from xlgpt.engines.xlsxzip import count_cells
from xlgpt.engines.refs import parse_cell, parse_range
from xlgpt.errors import XlgptError

# What this engine pays per cell (formulas/formulas_graph.py: each cell a slot of a value grid, each formula
# compiled once per pattern and evaluated by formulas' functions, elementwise for array formulas), measured on
# the default workbook (~500k cells counting every cell of an array formula): ~25 s CPU, ~350 MB peak.
MAX_CELLS = 2_000_000
SECONDS_PER_CELL = 5e-5
BYTES_PER_CELL = 700

def estimate_cells(path: str, limit: int = MAX_CELLS) -> int:
    """Cells this engine would evaluate (every cell of an array formula counted); extrapolated past `limit`."""
    return count_cells(path, limit)


def check_size(path: str, limit: int = MAX_CELLS) -> int:
    try:
        n = estimate_cells(path, limit)
    except (zipfile.BadZipFile, OSError) as e:
        raise XlgptError(f"cannot read {path}: {e}") from None
    if n > limit:
        minutes = n * SECONDS_PER_CELL / 60
        gb = n * BYTES_PER_CELL / 1e9
        raise XlgptError(
            f"the formulas engine would need about {minutes:,.0f} min and {gb:,.1f} GB for {n:,} cells; use --engine "
            f"ironcalc or libreoffice (formulas takes up to {limit:,} cells, every cell of an array formula counted)")
    return n


class FormulasSession(Session):
    engine = "formulas"

    def __init__(self, path: str, progress: bool = False, max_cells: int | None = None):
        limit = max_cells if max_cells is not None else int(os.environ.get("XLGPT_FORMULAS_MAX_CELLS", MAX_CELLS))
        self.n_cells = check_size(path, limit)
        self.path = path
        self.progress = progress
        t0 = time.monotonic()
        if progress:
            print(f"formulas: loading {path} ({self.n_cells:,} cells)", file=sys.stderr, flush=True)
        try:
            import formulas  # noqa: F401
            from formulas.tokens.operand import XlError
            from schedula import EMPTY
        except ImportError as e:  # pragma: no cover
            raise XlgptError(f"the formulas package is not installed: pip install formulas ({e})") from None
        from xlgpt.engines.formulas_book import read_book
        from xlgpt.engines.formulas_graph import Graph

        self._empty, self._XlError = EMPTY, XlError
        echo = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
        sheets, names = read_book(path)
        try:
            self._graph = Graph(sheets, names, progress=echo)
        except (KeyboardInterrupt, SystemExit, XlgptError):
            raise
        except Exception as e:
            raise XlgptError(f"the formulas engine could not load {path}: "
                             f"{' '.join(str(e).split()) or type(e).__name__}") from None
        del sheets
        self.seconds = {"load": time.monotonic() - t0}
        self._sheets = {t: i for i, t in enumerate(self._graph.titles)}
        self.recalc()
        self.seconds["calc"] = self._last_calc

    @property
    def sheet_names(self) -> list[str]:
        return list(self._sheets)

    def _sheet(self, name: str) -> int:
        if self._graph is None:
            raise XlgptError("the formulas session is closed")
        try:
            return self._sheets[name]
        except KeyError:
            raise XlgptError(f"no sheet named {name!r} (sheets: {', '.join(self._sheets)})") from None

    def set_cell(self, sheet, cell, value) -> None:
        index = self._sheet(sheet)
        row, col = parse_cell(cell)
        if isinstance(value, str):
            v = str(value)
        elif isinstance(value, (bool, np.bool_)):
            v = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            v = float(value)
        else:
            raise TypeError(f"cannot store a {type(value).__name__} in a cell")
        self._graph.set(index, row, col, v)

    def recalc(self) -> None:
        if self._graph is None:
            raise XlgptError("the formulas session is closed")
        t0 = time.monotonic()
        try:
            self.evaluated = self._graph.calculate()
        except (KeyboardInterrupt, SystemExit, XlgptError):
            raise
        except Exception as e:
            raise XlgptError(f"the formulas engine failed to recalculate: {' '.join(str(e).split())}") from None
        self._last_calc = time.monotonic() - t0
        if self.progress:
            print(f"formulas: {self.evaluated:,} formulas in {self._last_calc:.1f} s", file=sys.stderr, flush=True)

    def _convert(self, v):
        if v is self._empty or v is None:
            return None
        if isinstance(v, self._XlError):
            return CellError(str(v))
        if isinstance(v, str):
            return str(v)
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, float, np.integer, np.floating)):
            return float(v)
        if isinstance(v, np.ndarray) and v.size == 1:
            return self._convert(v.reshape(-1)[0])
        return v

    def read(self, sheet, ref) -> np.ndarray:
        index = self._sheet(sheet)
        r1, c1, r2, c2 = parse_range(ref)
        values = self._graph.read(index, r1, c1, r2, c2)
        out = np.empty(values.shape, dtype=object)
        for i, v in enumerate(values.flat):
            out.flat[i] = self._convert(v)
        return out

    def close(self) -> None:
        self._graph = None
