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
import re
import zipfile

import numpy as np

from xlgpt.engines.base import CellError, Session
from xlgpt.engines.xlsxzip import workbook_root
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

_REF = re.compile(r"^\$?[A-Za-z]{1,3}\$?[0-9]{1,7}(:\$?[A-Za-z]{1,3}\$?[0-9]{1,7})?$")


def _split_sheet_ref(text: str) -> tuple[str, str] | None:
    """"'block 0'!$A$1:$B$2" -> ("block 0", "A1:B2"); None if it is not one plain area."""
    text = text.strip()
    if text.startswith("="):
        text = text[1:]
    if text.startswith("'"):
        i, sheet = 1, []
        while i < len(text):
            if text[i] == "'":
                if text[i + 1:i + 2] == "'":
                    sheet.append("'")
                    i += 2
                    continue
                break
            sheet.append(text[i])
            i += 1
        else:
            return None
        rest = text[i + 1:]
        sheet_name = "".join(sheet)
    else:
        sheet_name, sep, rest = text.partition("!")
        if not sep:
            return None
        rest = "!" + rest
    if not rest.startswith("!"):
        return None
    ref = rest[1:]
    if not sheet_name or not _REF.match(ref):
        return None
    return sheet_name, ref.replace("$", "").upper()


def defined_names(path) -> dict[str, tuple[str, str]]:
    """Workbook-level defined names that point at one range: name -> (sheet title, "A1:B2").

    A single cell comes back as "A1". Names scoped to one sheet are included unless a
    workbook-level name of the same name exists; hidden/builtin names and names that are
    constants, formulas or several areas are left out."""
    root = workbook_root(os.fspath(path))
    found: dict[str, tuple[str, str]] = {}
    local: dict[str, tuple[str, str]] = {}
    for el in root.iter():
        if not el.tag.endswith("}definedName") and el.tag != "definedName":
            continue
        name = el.get("name") or ""
        if not name or name.startswith("_xlnm.") or el.get("hidden") in ("1", "true"):
            continue
        target = _split_sheet_ref(el.text or "")
        if target is None:
            continue
        (local if el.get("localSheetId") is not None else found)[name] = target
    for name, target in local.items():
        found.setdefault(name, target)
    return found


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
