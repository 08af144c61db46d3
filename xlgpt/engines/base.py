"""What every recalculation engine offers: open a workbook, set input cells, recalculate, read ranges."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlgpt.engines.refs import parse_cell, parse_range
from xlgpt.errors import XlgptError


@dataclass(frozen=True)
class CellError:
    """An error value computed by the spreadsheet, e.g. CellError("#N/A")."""

    code: str

    def __str__(self) -> str:
        return self.code


class Session:
    """One workbook loaded in one engine. Load cost is paid once; recalc() may be called many times."""

    engine = "?"

    def set_cell(self, sheet: str, cell: str, value: str | float | bool) -> None:
        """Store an input. A str is always stored as text, never parsed as a formula or number."""
        raise NotImplementedError

    def recalc(self) -> None:
        raise NotImplementedError

    def read(self, sheet: str, ref: str) -> np.ndarray:
        """Values of a rectangular range ("B3" or "B3:D9") as a 2-D object array of
        float | str | bool | None (empty) | CellError."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WorkerSession(Session):
    """A session whose engine runs in a worker script under another python (lo_worker.py, gnm_worker.py), one
    JSON line each way: inputs are queued and sent with the next recalc or read, values come back as JSON
    (an error as {"error": "#N/A"}). Subclasses start the worker and implement _call(msg, what) -> reply."""

    label = "?"  # the engine's name in messages
    _sheets: list[str]
    _pending: list[list]
    _closed: bool
    seconds: dict

    def _call(self, msg: dict, what: str = "") -> dict:
        raise NotImplementedError

    def _flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            self._call({"cmd": "set", "items": items}, what="set cells")

    def _check_sheet(self, sheet: str) -> None:
        if sheet not in self._sheets:
            raise XlgptError(f"no sheet named {sheet!r} (sheets: {', '.join(self._sheets)})")

    @property
    def sheet_names(self) -> list[str]:
        return list(self._sheets)

    def set_cell(self, sheet, cell, value) -> None:
        self._check_sheet(sheet)
        parse_cell(cell)
        if isinstance(value, str):
            kind, value = "text", str(value)
        elif isinstance(value, (bool, np.bool_)):
            kind, value = "bool", bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            kind, value = "number", float(value)
        else:
            raise TypeError(f"cannot store a {type(value).__name__} in a cell")
        if self._closed:
            raise XlgptError(f"the {self.label} session is closed")
        self._pending.append([sheet, cell.replace("$", ""), kind, value])

    def recalc(self) -> None:
        self._flush()
        self.seconds["calc"] = self._call({"cmd": "calc"}, what="recalculate").get("seconds")

    def read(self, sheet, ref) -> np.ndarray:
        self._check_sheet(sheet)
        r1, c1, r2, c2 = parse_range(ref)
        self._flush()
        rows = self._call({"cmd": "read", "sheet": sheet, "ref": ref.replace("$", "")},
                          what=f"read {sheet}!{ref}")["rows"]
        out = np.empty((r2 - r1 + 1, c2 - c1 + 1), dtype=object)
        if len(rows) != out.shape[0] or any(len(r) != out.shape[1] for r in rows):
            raise XlgptError(f"{self.label} returned a range of the wrong shape for {sheet}!{ref}")
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = float(v)
                elif isinstance(v, dict) and "error" in v:
                    v = CellError(v["error"])
                out[i, j] = v
        return out
