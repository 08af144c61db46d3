"""Recalculation engines: load an .xlsx, set input cells, recalculate, read values back.

    with open_workbook("gpt2.xlsx", engine="ironcalc") as s:   # loaded and fully recalculated
        s.set_cell("prompt", "B2", "Mike is quick")              # a str is always text
        s.recalc()
        logits = read_name(s, "gpt2.xlsx", "logits")           # 2-D object array

Engines: "ironcalc" (default, fast, in-process), "libreoffice" (headless soffice over UNO
in a worker process), "formulas" (pure Python, small workbooks only), "gnumeric" (Gnumeric's
library over its GObject bindings in a worker process; workbooks up to a few million cells).
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from xlgpt.engines.base import CellError, Session
from xlgpt.xlsx import reader
from xlgpt.errors import XlgptError

__all__ = [
    "CellError", "DEFAULT_ENGINE", "ENGINES", "Session", "defined_names", "open_workbook", "read_name",
]

ENGINES = ("ironcalc", "libreoffice", "formulas", "gnumeric")
DEFAULT_ENGINE = "ironcalc"


def open_workbook(path, engine: str = DEFAULT_ENGINE, progress: bool = False, snapshot: bool = True) -> Session:
    """Load the workbook in the engine and recalculate it fully: values can be read right away.
    snapshot: let IronCalc reuse (or save) its snapshot of a big workbook (engines/snapshot.py)."""
    if engine not in ENGINES:
        raise XlgptError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise XlgptError(f"workbook not found: {path}")
    if not zipfile.is_zipfile(path):
        raise XlgptError(f"not an .xlsx workbook (not a zip file): {path}")
    if engine == "ironcalc":
        from xlgpt.engines.ironcalc_engine import IronCalcSession
        return IronCalcSession(path, progress=progress, snapshot=snapshot)
    if engine == "libreoffice":
        from xlgpt.engines.libreoffice import LibreOfficeSession
        return LibreOfficeSession(path, progress=progress)
    if engine == "gnumeric":
        from xlgpt.engines.gnumeric import GnumericSession
        return GnumericSession(path, progress=progress)
    from xlgpt.engines.formulas_engine import FormulasSession
    return FormulasSession(path, progress=progress)


# ---- defined names (read straight from the zip: the workbook itself may be 800 MB) -----------
def defined_names(path) -> dict[str, tuple[str, str]]:
    """name -> (sheet, "A1:B2") for every plain defined name (xlsx.reader's), an unreadable file as XlgptError."""
    try:
        return reader.defined_names(path)
    except reader.XlsxError as e:
        raise XlgptError(str(e)) from None

def read_name(session: Session, path_or_names, name: str) -> np.ndarray:
    """Read the range a defined name points at. path_or_names: the workbook path or a
    dict returned by defined_names()."""
    names = path_or_names if isinstance(path_or_names, dict) else defined_names(path_or_names)
    if name not in names:
        lowered = {k.lower(): v for k, v in names.items()}
        if name.lower() not in lowered:
            raise XlgptError(f"the workbook has no defined name {name!r}")
        sheet, ref = lowered[name.lower()]
    else:
        sheet, ref = names[name]
    return session.read(sheet, ref)
