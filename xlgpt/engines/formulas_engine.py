"""The pure-Python `formulas` package: slow (~1-8 ms and ~5 KB per cell), for small workbooks only."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import time
import types
import zipfile

import numpy as np

from xlgpt.engines.base import CellError, Session
from xlgpt.engines.refs import parse_cell, parse_range
from xlgpt.engines.xlsxzip import sheet_titles, workbook_root
from xlgpt.errors import XlgptError

MAX_CELLS = 300_000
SECONDS_PER_CELL = 0.001  # measured 0.25 ms to load + 0.2 ms to calculate a cell; formula-heavy books cost more
BYTES_PER_CELL = 5_000


def _sheet_parts(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [i for i in zf.infolist()
            if i.filename.startswith("xl/worksheets/") and i.filename.endswith(".xml")
            and "/_rels/" not in i.filename]


_ARRAY = re.compile(rb'<f\s[^>]{0,200}?\bt="array"[^>]{0,200}?>')
_REF = re.compile(rb'ref="\$?([A-Z]+)\$?(\d+)(?::\$?([A-Z]+)\$?(\d+))?"')
_CARRY = 512  # longer than any <f ...> tag the pattern above can match


def _array_cells(tag: bytes) -> int:
    """Cells an array formula fills besides its anchor (which is a <c> element of its own)."""
    m = _REF.search(tag)
    if not m or not m.group(3):
        return 0

    def col(letters: bytes) -> int:
        n = 0
        for ch in letters:
            n = n * 26 + ch - 64
        return n

    rows = int(m.group(4)) - int(m.group(2)) + 1
    cols = col(m.group(3)) - col(m.group(1)) + 1
    return max(rows * cols - 1, 0)


def estimate_cells(path: str, limit: int = MAX_CELLS) -> int:
    """Number of cells the engine will evaluate: the <c> elements of the workbook's sheets plus every
    cell of a multi-cell array formula (its range `ref`, only the anchor is a <c>), counted by streaming the
    sheet XML out of the zip. Stops early once past `limit` and extrapolates from the bytes read."""
    with zipfile.ZipFile(path) as zf:
        parts = _sheet_parts(zf)
        total = sum(i.file_size for i in parts)
        count = seen = 0
        for info in parts:
            carry = b""
            with zf.open(info) as f:
                while True:
                    chunk = f.read(1 << 22)
                    buf = carry + chunk
                    cut = len(buf) if not chunk else max(0, len(buf) - _CARRY)
                    head = buf[:cut + 2]  # every '<c ' that starts before cut, and no other
                    count += head.count(b"<c ") + head.count(b"<c>")
                    for m in _ARRAY.finditer(buf):
                        if m.start() < cut:
                            count += _array_cells(m.group())
                    carry = buf[cut:]
                    seen += len(chunk)
                    if not chunk:
                        break
                    if count > limit:
                        return max(count, int(count * total / max(seen, 1)))
        return count


def check_size(path: str, limit: int = MAX_CELLS) -> int:
    try:
        n = estimate_cells(path, limit)
    except (zipfile.BadZipFile, OSError) as e:
        raise XlgptError(f"cannot read {path}: {e}") from None
    if n > limit:
        minutes = n * SECONDS_PER_CELL / 60
        gb = n * BYTES_PER_CELL / 1e9
        raise XlgptError(
            f"the formulas engine would need about {minutes:,.0f} min and {gb:,.1f} GB for {n:,} cells; "
            f"use --engine ironcalc or libreoffice")
    return n


@contextlib.contextmanager
def _quiet_tqdm(progress: bool):
    """formulas draws tqdm bars while compiling; hide them unless progress is wanted."""
    if progress:
        yield
        return
    import formulas.excel as fe
    import tqdm

    saved = fe.tqdm
    fe.tqdm = types.SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True))
    try:
        yield
    finally:
        fe.tqdm = saved


def _key_parts(key: str):
    """"'[book.xlsx]SHEET'!A1:B2" -> ("SHEET", "A1:B2"); None for names and other nodes."""
    if not isinstance(key, str) or not key.startswith("'[") or "'!" not in key:
        return None
    head, _, ref = key.rpartition("'!")
    sheet = head[head.rfind("]") + 1:]  # sheet titles cannot contain ']'
    if not sheet:
        return None  # a defined name: "'[book.xlsx]'!NAME"
    return sheet.replace("''", "'"), ref


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
            import formulas
            import schedula
        except ImportError as e:  # pragma: no cover
            raise XlgptError(f"the formulas package is not installed: pip install formulas ({e})") from None
        self._empty = schedula.EMPTY
        from formulas.tokens.operand import XlError

        self._XlError = XlError
        level = logging.getLogger("formulas").level
        try:
            with _quiet_tqdm(progress):
                if not progress:
                    logging.getLogger("formulas").setLevel(logging.ERROR)
                self._model = formulas.ExcelModel().loads(path).finish()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            raise XlgptError(f"the formulas engine could not load {path}: {' '.join(str(e).split()) or type(e).__name__}") from None
        finally:
            logging.getLogger("formulas").setLevel(level)
        self.seconds = {"load": time.monotonic() - t0}

        # sheet titles as in the file (formulas upper-cases them)
        self._sheets = {t: t.upper() for t in sheet_titles(workbook_root(path))}

        # where each cell's value lives: its own node, or (array formulas) a range node
        from formulas.cell import RangesAssembler

        dsp = self._model.dsp
        self._cells: dict[tuple[str, int, int], str] = {}
        self._array_cells: dict[tuple[str, int, int], tuple[str, int, int, tuple[int, int]]] = {}
        for key in dsp.data_nodes:
            parts = _key_parts(key)
            if parts is None:
                continue
            sheet, ref = parts
            try:
                r1, c1, r2, c2 = parse_range(ref)
            except XlgptError:
                continue  # whole columns/rows: never read directly
            if ":" not in ref:
                self._cells[(sheet, r1, c1)] = key
                continue
            computed = any(not isinstance(dsp.nodes[fn].get("function"), RangesAssembler)
                           for fn in dsp.dmap.pred.get(key, ()))
            if computed:  # an array formula's result, not a range assembled from its cells
                shape = (r2 - r1 + 1, c2 - c1 + 1)
                for r in range(r1, r2 + 1):
                    for c in range(c1, c2 + 1):
                        self._array_cells[(sheet, r, c)] = (key, r - r1, c - c1, shape)
        self._inputs: dict[str, object] = {}  # node key -> value, for cells the model knows
        self._extra: dict[tuple[str, int, int], object] = {}  # inputs no formula depends on
        self._solution = None
        self.recalc()
        self.seconds["calc"] = self._last_calc

    @property
    def sheet_names(self) -> list[str]:
        return list(self._sheets)

    def _sheet(self, name: str) -> str:
        if self._model is None:
            raise XlgptError("the formulas session is closed")
        try:
            return self._sheets[name]
        except KeyError:
            raise XlgptError(f"no sheet named {name!r} (sheets: {', '.join(self._sheets)})") from None

    def set_cell(self, sheet, cell, value) -> None:
        upper = self._sheet(sheet)
        row, col = parse_cell(cell)
        if isinstance(value, str):
            v = str(value)
        elif isinstance(value, (bool, np.bool_)):
            v = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            v = float(value)
        else:
            raise TypeError(f"cannot store a {type(value).__name__} in a cell")
        key = self._cells.get((upper, row, col))
        if key is None:
            self._extra[(upper, row, col)] = v
        else:
            self._inputs[key] = v

    def recalc(self) -> None:
        if self._model is None:
            raise XlgptError("the formulas session is closed")
        t0 = time.monotonic()
        try:
            self._solution = self._model.calculate(inputs=dict(self._inputs))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            raise XlgptError(f"the formulas engine failed to recalculate: {' '.join(str(e).split())}") from None
        self._last_calc = time.monotonic() - t0

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

    def _value(self, key: str) -> np.ndarray | None:
        sol = self._solution
        if key not in sol:
            return None
        v = np.asarray(getattr(sol[key], "value", sol[key]), dtype=object)
        return v.reshape(1, -1) if v.ndim < 2 else v

    def _cell(self, sheet: str, r: int, c: int):
        if (sheet, r, c) in self._extra:
            return self._extra[(sheet, r, c)]
        key = self._cells.get((sheet, r, c))
        if key is not None:
            v = self._value(key)
            if v is not None:
                return self._convert(v[0, 0])
        hit = self._array_cells.get((sheet, r, c))
        if hit is not None:
            key, i, j, _ = hit
            v = self._value(key)
            if v is None:
                return None
            # Excel repeats a single row / column over a larger array range, else #N/A
            i = 0 if v.shape[0] == 1 else i
            j = 0 if v.shape[1] == 1 else j
            if i < v.shape[0] and j < v.shape[1]:
                return self._convert(v[i, j])
            return CellError("#N/A")
        return None

    def read(self, sheet, ref) -> np.ndarray:
        upper = self._sheet(sheet)
        r1, c1, r2, c2 = parse_range(ref)
        out = np.empty((r2 - r1 + 1, c2 - c1 + 1), dtype=object)
        for i in range(r2 - r1 + 1):
            for j in range(c2 - c1 + 1):
                out[i, j] = self._cell(upper, r1 + i, c1 + j)
        return out

    def close(self) -> None:
        self._model = None
        self._solution = None
