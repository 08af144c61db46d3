"""Cheap facts read straight from the .xlsx zip, without loading the workbook (it may be 800 MB)."""
from __future__ import annotations

import re
import zipfile
from xml.etree import ElementTree as ET

from xlgpt.errors import XlgptError


def workbook_part(zf: zipfile.ZipFile) -> str:
    """Path of the workbook part inside the zip (normally xl/workbook.xml)."""
    try:
        rels = ET.fromstring(zf.read("_rels/.rels"))
        for rel in rels:
            if rel.get("Type", "").endswith("/officeDocument"):
                target = rel.get("Target", "").lstrip("/")
                if target in zf.namelist():
                    return target
    except (KeyError, ET.ParseError):
        pass
    return "xl/workbook.xml"


def workbook_root(path: str) -> ET.Element:
    """The parsed workbook part; XlgptError if the file is not a readable .xlsx."""
    try:
        with zipfile.ZipFile(path) as zf:
            return ET.fromstring(zf.read(workbook_part(zf)))
    except FileNotFoundError:
        raise XlgptError(f"workbook not found: {path}") from None
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError) as e:
        raise XlgptError(f"not a readable .xlsx workbook: {path} ({e})") from None


def sheet_titles(root: ET.Element) -> list[str]:
    return [el.get("name") for el in root.iter() if el.tag.split("}")[-1] == "sheet" and el.get("name")]


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
