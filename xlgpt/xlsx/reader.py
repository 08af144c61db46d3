"""Numbers as stored in an .xlsx: read_range(path, sheet, "C5:Z900") and read_named(path, name).

The NumPy reference of `verify` must use the weights exactly as written (an engine parses the decimal
text into float64, which is not float64(float32)), and there are 124M of them. So the sheet XML is
decompressed in chunks and parsed with numpy, not an XML library: positions of "<c ", "<v>" and "</v>",
column letters from the `r` attribute, row numbers from the enclosing <row>. The 15-character numbers
our writer stores (+1.23456789e-02) are converted exactly in bulk: 9 digits / 10**k with k <= 22 is a
correctly rounded division of two exact doubles, the same double an engine's parser gives. Any other
number text goes through numpy's string-to-float cast (correctly rounded too). Cells that are not
numbers (text, booleans, errors, shared strings, empty) read as NaN. Works on any xlsx whose cells carry
`r` attributes (Excel, LibreOffice, openpyxl, ours); others raise an error.
"""
from __future__ import annotations

import os
import posixpath
import queue
import re
import threading
import zipfile
from xml.etree import ElementTree as ET

import numpy as np

from .heap import heap_reuse

CHUNK = 1 << 22  # bytes of sheet XML parsed at a time: temporaries stay small
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_POW10 = 10.0 ** np.arange(23)


def _parse_ref(ref: str) -> tuple[int, int, int, int]:
    m = re.fullmatch(r"\$?([A-Za-z]{1,3})\$?(\d+)(?::\$?([A-Za-z]{1,3})\$?(\d+))?", ref.strip())
    if not m:
        raise XlsxError(f"not a range reference: {ref!r}")

    def col(s: str) -> int:
        n = 0
        for ch in s.upper():
            n = n * 26 + ord(ch) - 64
        return n

    r1, c1 = int(m.group(2)), col(m.group(1))
    r2, c2 = (int(m.group(4)), col(m.group(3))) if m.group(3) else (r1, c1)
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


class XlsxError(ValueError):
    """An .xlsx that cannot be read as asked (the application turns it into its one-line message)."""


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


def workbook_root(path) -> ET.Element:
    """The parsed workbook part; XlsxError if the file is not a readable .xlsx."""
    try:
        with zipfile.ZipFile(path) as zf:
            return ET.fromstring(zf.read(workbook_part(zf)))
    except FileNotFoundError:
        raise XlsxError(f"workbook not found: {path}") from None
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError) as e:
        raise XlsxError(f"not a readable .xlsx workbook: {path} ({e})") from None


def sheet_titles(root: ET.Element) -> list[str]:
    return [el.get("name") for el in root.iter() if el.tag.split("}")[-1] == "sheet" and el.get("name")]


_NAME_REF = re.compile(r"^\$?[A-Za-z]{1,3}\$?[0-9]{1,7}(:\$?[A-Za-z]{1,3}\$?[0-9]{1,7})?$")


def split_sheet_ref(text: str) -> tuple[str, str] | None:
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
    if not sheet_name or not _NAME_REF.match(ref):
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
        target = split_sheet_ref(el.text or "")
        if target is None:
            continue
        (local if el.get("localSheetId") is not None else found)[name] = target
    for name, target in local.items():
        found.setdefault(name, target)
    return found


def sheet_parts(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> zip member of its XML."""
    wb_part = workbook_part(zf)
    root = ET.fromstring(zf.read(wb_part))
    rels_path = posixpath.join(posixpath.dirname(wb_part), "_rels", posixpath.basename(wb_part) + ".rels")
    targets = {}
    for rel in ET.fromstring(zf.read(rels_path)):
        t = rel.get("Target", "")
        targets[rel.get("Id")] = t.lstrip("/") if t.startswith("/") else posixpath.normpath(
            posixpath.join(posixpath.dirname(wb_part), t))
    out = {}
    for el in root.iter():
        if el.tag.split("}")[-1] == "sheet":
            out[el.get("name")] = targets.get(el.get(f"{{{_REL_NS}}}id"), "")
    return out


# ---- parsing ---------------------------------------------------------------------------------------------
def _view(a: np.ndarray, dtype: str) -> np.ndarray:
    """Overlapping little-endian words at every byte offset: view[i] = a[i : i + size]."""
    size = np.dtype(dtype).itemsize
    return np.ndarray((a.size - size + 1,), dtype, buffer=a, strides=(1,))


_D8 = 0x3030303030303030


def _digits8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8 ASCII digits packed little-endian in uint64 -> (value, all digits?)."""
    U = np.uint64
    ok = ((x & U(0xF0F0F0F0F0F0F0F0)) == U(_D8)) & (((x + U(0x0606060606060606)) & U(0xF0F0F0F0F0F0F0F0)) == U(_D8))
    x = x - U(_D8)
    x = (x * U(10) + (x >> U(8))) & U(0x00FF00FF00FF00FF)
    x = (x * U(100) + (x >> U(16))) & U(0x0000FFFF0000FFFF)
    x = (x * U(10000) + (x >> U(32))) & U(0xFFFFFFFF)
    return x, ok


def _numbers(a: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """float64 of the number texts a[start : start+length]."""
    out = np.empty(start.size, np.float64)
    fast = length == 15  # "+1.23456789e-02", as our writer stores numbers
    if fast.any():
        idx = np.flatnonzero(fast)
        st = start[idx]
        head = _view(a, "<u4")[st]  # sign, first digit, ".", digit
        mant, ok = _digits8(_view(a, "<u8")[st + 3])
        tail = _view(a, "<u4")[st + 11]  # "e", sign, two digits
        sign = head & 0xFF
        d1 = ((head >> 8) & 0xFF).astype(np.int64) - 48
        e1 = ((tail >> 16) & 0xFF).astype(np.int64) - 48
        e2 = (tail >> 24).astype(np.int64) - 48
        es = (tail >> 8) & 0xFF
        ok &= ((sign == 43) | (sign == 45)) & (((head >> 16) & 0xFF) == 46) & (d1 >= 0) & (d1 <= 9)
        ok &= ((tail & 0xFF) == 101) & ((es == 43) | (es == 45)) & (e1 >= 0) & (e1 <= 9) & (e2 >= 0) & (e2 <= 9)
        k = 8 - np.where(es == 45, -1, 1) * (e1 * 10 + e2)  # value = q / 10**k
        ok &= (k >= -22) & (k <= 22)
        q = (d1 * 100_000_000 + mant.astype(np.int64)).astype(np.float64)
        kk = np.clip(k, -22, 22)
        # a correctly rounded operation on two exact doubles: the double nearest the decimal
        v = np.where(kk >= 0, q / _POW10[np.abs(kk)], q * _POW10[np.abs(kk)])
        v[sign == 45] *= -1
        out[idx[ok]] = v[ok]
        fast[idx[~ok]] = False
    slow = np.flatnonzero(~fast)
    if slow.size:
        width = int(length[slow].max(initial=1))
        if width <= 40:
            w = a[np.minimum(start[slow, None] + np.arange(width), a.size - 1)]
            w[np.arange(width) >= length[slow, None]] = 0
            try:
                out[slow] = np.ascontiguousarray(w).view(f"S{width}").ravel().astype(np.float64)
                return out
            except ValueError:
                pass
        for i in slow:  # odd texts: one by one
            try:
                out[i] = float(a[start[i]:start[i] + length[i]].tobytes())
            except ValueError:
                out[i] = np.nan
    return out


_LT_C = 0x2063 << 8 | 0x3C  # "<c " (3 bytes)
_LT_V = 0x3E763C  # "<v>"
_END_V = 0x3E762F3C  # "</v>"
_ROW = 0x776F723C  # "<row"
_R_ATTR = 0x223D7220  # ' r="'
_T_ATTR = 0x223D7420  # ' t="'


def _parse_chunk(a: np.ndarray, row0: int):
    """(rows, cols, values) of the numeric cells in a piece of <sheetData> that starts at a <row> or a
    cell; row0: the row in progress at its start. Also returns the last row number seen."""
    u32 = _view(a, "<u4")
    lt = np.flatnonzero(a[:-8] == 60)
    w = u32[lt]
    w3 = w & 0xFFFFFF
    rows_at = lt[w == _ROW]
    cells = lt[(w3 == _LT_C) | (w3 == 0x3E633C) | (w3 == 0x2F633C)]  # "<c " "<c>" "<c/"
    vs = lt[w3 == _LT_V]
    ve = lt[w == _END_V]
    if vs.size != ve.size:
        raise XlsxError("malformed sheet XML: unbalanced <v> elements")
    row_nums = np.empty(rows_at.size, np.int64)
    last = row0
    for i, p in enumerate(rows_at.tolist()):  # one per row: a little Python is fine
        m = re.match(rb'<row\b[^>]*?\sr="(\d+)"', a[p:p + 64].tobytes())
        last = int(m.group(1)) if m else last + 1
        row_nums[i] = last
    if vs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), last
    owner = np.searchsorted(cells, vs, side="right") - 1
    if (owner < 0).any():
        raise XlsxError("malformed sheet XML: a <v> outside any cell")
    cp = cells[owner]
    if not np.all(u32[cp + 2] == _R_ATTR):  # our writer, Excel and openpyxl write r first
        raise XlsxError("cells without an r attribute right after <c are not supported by this reader")
    L = u32[cp + 6]
    l0, l1, l2 = (L & 0xFF).astype(np.int64) - 64, ((L >> 8) & 0xFF).astype(np.int64) - 64, ((L >> 16) & 0xFF).astype(np.int64) - 64
    is1, is2 = (l1 >= 1) & (l1 <= 26), (l2 >= 1) & (l2 <= 26)
    col = np.where(is1, np.where(is2, l0 * 676 + l1 * 26 + l2, l0 * 26 + l1), l0)
    ri = np.searchsorted(rows_at, cp, side="right") - 1
    row = np.where(ri >= 0, row_nums[np.maximum(ri, 0)], row0) if row_nums.size else np.full(cp.size, row0)
    numeric = (l0 >= 1) & (l0 <= 26)
    # a t attribute other than "n" (s, b, e, str, inlineStr): no number
    tp = np.flatnonzero(a[:-8] == 116) - 1
    tq = tp[u32[tp] == _T_ATTR]
    if tq.size:
        own = np.searchsorted(cp, tq, side="right") - 1
        keep = own >= 0
        own, tq = own[keep], tq[keep]
        win = a[cp[own, None] + np.arange(256)]
        tag_end = cp[own] + np.argmax(win == 62, axis=1)  # only the cell's own tag counts
        mine = (tq < tag_end) & (a[tq + 4] != 110)
        numeric[own[mine]] = False
    start, length = vs[numeric] + 3, ve[numeric] - vs[numeric] - 3
    return row[numeric], col[numeric], _numbers(a, start, length), last


def _pieces(fh):
    """The <sheetData> XML cut after a "</row>" or "</c>" into pieces of about CHUNK bytes."""
    buf = b""
    started = False
    while True:
        data = fh.read(CHUNK)
        buf += data
        if not started:
            i = buf.find(b"<sheetData")
            if i < 0:
                if not data:
                    return
                continue
            buf = buf[i:]
            started = True
        if not data:
            if buf:
                yield buf
            return
        end = max(buf.rfind(b"</row>"), buf.rfind(b"</c>"))
        if end < 0:
            continue
        end += 6 if buf.startswith(b"</row>", end) else 4
        yield buf[:end]
        buf = buf[end:]


def iter_cells(zf: zipfile.ZipFile, member: str, max_row: int | None = None):
    """Yields (rows, cols, values) arrays of numeric cells, piece by piece, in document order.
    Decompression runs on a second thread (zlib releases the GIL) while numpy parses."""
    try:
        fh = zf.open(member)
    except KeyError:
        raise XlsxError(f"the workbook has no part {member}") from None
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for piece in _pieces(fh):
                while not stop.is_set():
                    try:
                        q.put(piece, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(None)
        except BaseException as e:  # surfaced in the consumer
            q.put(e)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    row = 0
    try:
        while True:
            piece = q.get()
            if piece is None:
                return
            if isinstance(piece, BaseException):
                raise piece
            a = np.frombuffer(piece + bytes(260), np.uint8)  # room for look-ahead windows
            r, c, v, row = _parse_chunk(a, row)
            if r.size:
                yield r, c, v
            if max_row is not None and row > max_row:
                return
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()
        fh.close()


# ---- public API ----------------------------------------------------------------------------------------------
def read_ranges(path, sheet: str, refs: list[str]) -> list[np.ndarray]:
    """Several ranges of one sheet in one pass: float64 arrays, NaN where a cell holds no number."""
    with heap_reuse():
        return _read_ranges(os.fspath(path), sheet, refs)


def _read_ranges(path: str, sheet: str, refs: list[str]) -> list[np.ndarray]:
    boxes = [_parse_ref(r) for r in refs]
    outs = [np.full((r2 - r1 + 1, c2 - c1 + 1), np.nan) for r1, c1, r2, c2 in boxes]
    if not boxes:
        return outs
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise XlsxError(f"cannot open {path}: {e}") from None
    with zf:
        parts = sheet_parts(zf)
        if sheet not in parts:
            raise XlsxError(f"no sheet named {sheet!r} in {path}")
        top = max(b[2] for b in boxes)
        for r, c, v in iter_cells(zf, parts[sheet], max_row=top):
            for (r1, c1, r2, c2), out in zip(boxes, outs):
                lo, hi = np.searchsorted(r, [r1, r2 + 1]) if _sorted(r) else (0, r.size)
                rr, cc, vv = r[lo:hi], c[lo:hi], v[lo:hi]
                m = (rr >= r1) & (rr <= r2) & (cc >= c1) & (cc <= c2)
                out[rr[m] - r1, cc[m] - c1] = vv[m]
    return outs


def _sorted(r: np.ndarray) -> bool:
    return bool(r.size < 2 or np.all(r[1:] >= r[:-1]))


def read_range(path, sheet: str, ref: str) -> np.ndarray:
    """The numbers of a rectangle ("C5:Z900" or "C5") as stored: float64, NaN for non-numbers."""
    return read_ranges(path, sheet, [ref])[0]


def read_names(path, names: list[str]) -> dict[str, np.ndarray]:
    """Several defined names, each sheet decompressed once."""
    table = defined_names(path)
    lower = {k.lower(): k for k in table}
    by_sheet: dict[str, list[str]] = {}
    for n in names:
        key = n if n in table else lower.get(n.lower())
        if key is None:
            raise XlsxError(f"the workbook has no defined name {n!r}")
        by_sheet.setdefault(table[key][0], []).append(n)
    out = {}
    for sheet, ns in by_sheet.items():
        refs = [table[n if n in table else lower[n.lower()]][1] for n in ns]
        for n, a in zip(ns, read_ranges(path, sheet, refs)):
            out[n] = a
    return out


def read_named(path, name: str) -> np.ndarray:
    """The numbers of one defined name as stored (for many, read_names decompresses each sheet once)."""
    return read_names(path, [name])[name]


_FORMULA_CELL = re.compile(rb'<c r="([A-Z]+)([0-9]+)"[^>]*>(?:<v>[^<]*</v>)?<f( t="array" ref="([A-Z0-9:]+)")?')


def formula_cells(path, skip=()) -> dict[str, dict[tuple[int, int], str | None]]:
    """Where each sheet (but those in `skip`) holds formulas: (row, col) -> its array range ("C5:D9") or None."""
    out: dict[str, dict[tuple[int, int], str | None]] = {}
    with zipfile.ZipFile(path) as zf:
        for sheet, part in sheet_parts(zf).items():
            if sheet in skip:
                continue
            cells: dict[tuple[int, int], str | None] = {}
            if part:
                xml = zf.read(part)
                for m in _FORMULA_CELL.finditer(xml):
                    r1, c1, _, _ = _parse_ref(m.group(1).decode() + m.group(2).decode())
                    cells[(r1, c1)] = m.group(4).decode() if m.group(4) else None
            out[sheet] = cells
    return out
