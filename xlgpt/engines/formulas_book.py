"""Reading an .xlsx for the formulas engine: cell values, formulas and array refs straight from the sheet XML.

openpyxl (what `formulas.ExcelModel` loads with) builds a Python object per cell; this reads the XML once with
ElementTree and keeps constants in one object grid per sheet (the shape `formulas` gives a range's value).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from xlgpt.engines.refs import parse_range
from xlgpt.engines.xlsxzip import workbook_part
from xlgpt.errors import XlgptError
from xlgpt.xlsx.reader import sheet_parts

_CELL = re.compile(r"([A-Z]{1,3})([0-9]{1,7})$")

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]

@dataclass
class FormulaCell:
    row: int
    col: int
    text: str  # without the leading '='
    ref: tuple[int, int, int, int] | None  # an array formula's range (r1, c1, r2, c2); None for one cell

@dataclass
class SheetData:
    title: str
    values: dict[tuple[int, int], object] = field(default_factory=dict)  # constants
    formulas: list[FormulaCell] = field(default_factory=list)
    rows: int = 0
    cols: int = 0

def _col(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n

def _number(text: str):
    """A number as openpyxl reads it (what `formulas` computes with): int when it is written as one."""
    t = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", t):
        return int(t)
    return float(t)

def _text_of(el) -> str:
    """The text of an <is> or <si> element: its <t>, or the <t> of every rich-text run (phonetic runs excluded)."""
    parts = []
    for child in el:
        tag = _local(child.tag)
        if tag == "t":
            parts.append(child.text or "")
        elif tag == "r":
            parts.extend(t.text or "" for t in child if _local(t.tag) == "t")
    return "".join(parts)

def _shared_strings(zf: zipfile.ZipFile) -> list[str]:
    name = next((n for n in zf.namelist() if n.lower().endswith("sharedstrings.xml")), None)
    if name is None:
        return []
    return [_text_of(si) for si in ET.fromstring(zf.read(name)) if _local(si.tag) == "si"]

def _read_sheet(f, title: str, strings: list[str], errors: dict) -> SheetData:
    sd = SheetData(title)
    shared: dict[str, tuple[int, int, str]] = {}  # shared formula index -> (row, col, text) of its master
    for _, el in ET.iterparse(f):
        if _local(el.tag) != "c":
            continue
        m = _CELL.match(el.get("r", ""))
        if not m:
            raise XlgptError(f"sheet {title!r}: a cell without a usable r attribute")
        row, col = int(m.group(2)), _col(m.group(1))
        t = el.get("t", "n")
        f_el = v_el = is_el = None
        for child in el:
            tag = _local(child.tag)
            if tag == "f":
                f_el = child
            elif tag == "v":
                v_el = child
            elif tag == "is":
                is_el = child
        sd.rows, sd.cols = max(sd.rows, row), max(sd.cols, col)
        if f_el is not None:
            text = f_el.text or ""
            ref = None
            if f_el.get("t") == "array":
                r1, c1, r2, c2 = parse_range(f_el.get("ref") or f"{m.group(1)}{row}")
                ref = (r1, c1, r2, c2)
                sd.rows, sd.cols = max(sd.rows, r2), max(sd.cols, c2)
            elif f_el.get("t") == "shared":
                si = f_el.get("si")
                if text:
                    shared[si] = (row, col, text)
                elif si in shared:
                    from xlgpt.engines.formulas_graph import shift_formula
                    r0, c0, master = shared[si]
                    text = shift_formula(master, row - r0, col - c0)
                else:
                    raise XlgptError(f"sheet {title!r}: a shared formula without its master cell")
            if text:
                sd.formulas.append(FormulaCell(row, col, text, ref))
                el.clear()
                continue
        if t == "inlineStr":
            if is_el is not None:
                sd.values[(row, col)] = _text_of(is_el)
        elif v_el is not None and v_el.text is not None:
            v = v_el.text
            if t == "s":
                sd.values[(row, col)] = strings[int(v)]
            elif t == "str":
                sd.values[(row, col)] = v
            elif t == "b":
                sd.values[(row, col)] = v.strip() in ("1", "true")
            elif t == "e":
                sd.values[(row, col)] = errors.get(v.strip(), v)
            else:
                sd.values[(row, col)] = _number(v)
        el.clear()
    return sd

def read_book(path: str) -> tuple[list[SheetData], dict[str, str]]:
    """Every sheet's constants and formulas, and the workbook-level defined names (NAME upper-cased -> text)."""
    from formulas.tokens.operand import Error

    try:
        with zipfile.ZipFile(path) as zf:
            wb_part = workbook_part(zf)
            root = ET.fromstring(zf.read(wb_part))
            strings = _shared_strings(zf)
            sheets = []
            for title, part in sheet_parts(zf).items():  # workbook order
                with zf.open(part) as f:
                    sheets.append(_read_sheet(f, title, strings, Error.errors))
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError, ValueError) as e:
        raise XlgptError(f"the formulas engine could not read {path}: {e}") from None
    names = {}
    for el in root.iter():
        if _local(el.tag) != "definedName" or el.get("localSheetId") is not None or el.get("hidden") in ("1", "true"):
            continue  # as formulas.ExcelModel: global names only
        if el.get("name") and el.text:
            names[el.get("name").upper()] = el.text
    return sheets, names
