"""What every recalculation engine offers: open a workbook, set input cells, recalculate, read ranges."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
