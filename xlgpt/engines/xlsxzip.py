"""Cheap facts read straight from the .xlsx zip, without loading the workbook (it may be 800 MB): the xlsx
package's readers, with its error as the application's one-line error."""
from __future__ import annotations

import re
import zipfile
from xml.etree import ElementTree as ET

from xlgpt.errors import XlgptError
from xlgpt.xlsx import reader
from xlgpt.xlsx.reader import sheet_titles, workbook_part  # noqa: F401  (re-exported for the engines)


def workbook_root(path: str) -> ET.Element:
    """The parsed workbook part; XlgptError if the file is not a readable .xlsx."""
    try:
        return reader.workbook_root(path)
    except reader.XlsxError as e:
        raise XlgptError(str(e)) from None


# An array formula's <f> and whether a cached value follows it: when it does (Excel, and xlgpt unless
# --no-cached-values), every other cell of the array is stored as a <c> of its own and is counted as one.
_ARRAY_F = re.compile(rb'<f\b[^>]*?\bt="array"[^>]*>[^<]*</f>(<v>)?')
_REF = re.compile(rb'\bref="\$?([A-Z]{1,3})\$?([0-9]{1,7})(?::\$?([A-Z]{1,3})\$?([0-9]{1,7}))?"')


def _letters(b: bytes) -> int:
    n = 0
    for ch in b:
        n = n * 26 + ch - 64
    return n


def _array_cells(buf: bytes) -> int:
    """Cells array formulas fill beyond the one cell each is stored in, where those cells are not stored."""
    extra = 0
    for m in _ARRAY_F.finditer(buf):
        ref = _REF.search(m.group())
        if m.group(1) or not ref or not ref.group(3):
            continue
        c1, r1, c2, r2 = ref.group(1), ref.group(2), ref.group(3), ref.group(4)
        extra += (abs(int(r2) - int(r1)) + 1) * (abs(_letters(c2) - _letters(c1)) + 1) - 1
    return extra


def count_part(f, limit: int | None = None) -> tuple[int, int, int]:
    """(stored cells, formulas, cells filled by array formulas but not stored) of one sheet's XML, streamed from
    the open file f; stops once the cells pass limit."""
    tail = b""
    cells = formulas = extra = 0
    while chunk := f.read(1 << 22):
        buf = tail + chunk
        cut = buf.rfind(b"</c>") + 4 if b"</c>" in buf else 0  # whole cells only: none counted twice or cut
        body, tail = buf[:cut], buf[cut:]
        cells += body.count(b"<c ") + body.count(b"<c>")
        formulas += body.count(b"<f>") + body.count(b"<f ")
        extra += _array_cells(body)
        if limit is not None and cells + extra > limit:
            break
    cells += tail.count(b"<c ") + tail.count(b"<c>")
    return cells, formulas, extra


def sheet_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The zip members of the workbook's sheets."""
    wanted = set(reader.sheet_parts(zf).values())
    return [i for i in zf.infolist() if i.filename in wanted]


def count_cells(path: str, limit: int | None = None) -> int:
    """Cells an engine evaluates or holds: every stored cell, plus the cells of array formulas stored only in
    their first cell, counted by streaming the sheet XML out of the zip. Past `limit` it stops and extrapolates
    from the bytes read (a full-size workbook holds ~10 GB of XML)."""
    with zipfile.ZipFile(path) as zf:
        parts = sheet_members(zf)
        total = sum(i.file_size for i in parts)
        count = seen = 0
        for info in parts:
            with zf.open(info) as f:
                cells, _, extra = count_part(f, None if limit is None else limit - count)
                count += cells + extra
                if limit is not None and count > limit:
                    seen += f.tell() if f.seekable() else info.file_size
                    return max(count, int(count * total / max(seen, 1)))
            seen += info.file_size
        return count
