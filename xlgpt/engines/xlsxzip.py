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


def count_cells(path: str, limit: int | None = None) -> int:
    """Cells in the workbook's sheets: the <c> elements plus the cells each array formula fills beyond its
    first, counted by streaming the sheet XML out of the zip. Past `limit` it stops and extrapolates from
    the bytes read (a full-size workbook holds ~10 GB of XML)."""
    ref = re.compile(rb'<f t="array" ref="\$?([A-Z]+)\$?([0-9]+)(?::\$?([A-Z]+)\$?([0-9]+))?"')

    def col(letters: bytes) -> int:
        n = 0
        for ch in letters:
            n = n * 26 + ch - 64
        return n

    n = seen = 0
    with zipfile.ZipFile(path) as zf:
        parts = [i for i in zf.infolist() if i.filename.startswith("xl/worksheets/")
                 and i.filename.endswith(".xml") and "/_rels/" not in i.filename]
        total = sum(i.file_size for i in parts)
        for info in parts:
            tail = b""
            with zf.open(info) as f:
                while chunk := f.read(1 << 22):
                    seen += len(chunk)
                    buf = tail + chunk
                    cut = max(0, buf.rfind(b"<"))  # an element split by the chunk waits for the next one
                    body, tail = buf[:cut], buf[cut:]
                    n += body.count(b"<c ") + body.count(b"<c>")
                    for m in ref.finditer(body):
                        if m.group(3):
                            n += (int(m.group(4)) - int(m.group(2)) + 1) * (col(m.group(3)) - col(m.group(1)) + 1) - 1
                    if limit is not None and n > limit:
                        return max(n, int(n * total / max(seen, 1)))
            n += tail.count(b"<c ") + tail.count(b"<c>")
    return n
