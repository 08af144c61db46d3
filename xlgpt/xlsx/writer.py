"""Serialise a `Book` to .xlsx (SpreadsheetML), streaming, fast, reproducibly.

Why hand-written: openpyxl's write-only mode formats ~0.25 M cells/s, so a 124M-cell GPT-2 takes 8-11
minutes; XlsxWriter ~0.29 M/s. Here
  * float32 weight blocks never become Python strings: numblock.py formats them with integer arithmetic
    (9 significant digits, exact) and writes their compressed form directly, chunk by chunk, in worker
    processes (threads for small books: see _executor);
  * everything else is XML text compressed with zlib (`level`), also in the workers;
  * the zip is written by hand: fixed timestamps and part order, so the same book gives the same bytes.
Output: inline strings, an `r` attribute on every cell (IronCalc needs it), no cached values; written to
a temporary file in the target folder and renamed over `path` only when complete.

Progress: `write_book(..., progress=cb)` calls `cb(label, done, total)` after each chunk of weights:
label is the tensor being written (its defined name, else the sheet name), done and total count weight
cells (all blocks of the book). `progress_bar()` gives such a callback drawing a tqdm bar on a terminal.
"""
from __future__ import annotations

import bisect
import multiprocessing
import os
import re
import signal
import stat
import struct
import sys
import tempfile
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .book import MAX_COLS, NOVALUE, Between, Book, Formula, Sheet, Style, cell_ref, col_letter
from .deflate import FINAL_EMPTY, crc32_combine, zlib_segment
from .heap import heap_reuse
from .numblock import coder, sci_texts

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_BASE = "application/vnd.openxmlformats-officedocument"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
TEXT_BYTES = 1 << 22  # XML text gathered into one zlib segment
CHUNK_CELLS = 1 << 20  # weight cells per worker job: one Huffman code, one deflate block

# Functions newer than Excel 2007 must be stored with their prefix, or LibreOffice shows #NAME?.
_XLFN = re.compile(r"(?<![\w.])(UNICODE|UNICHAR)\(")
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class IllegalText(ValueError):
    pass


def xml_text(s: str) -> str:
    bad = _ILLEGAL_XML.search(s)
    if bad:
        raise IllegalText(f"text contains U+{ord(bad.group()):04X}, which an .xlsx file cannot store")
    if "&" in s or "<" in s or ">" in s or '"' in s:
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return s


# A cell's text must read back as itself in every reader. CR is written as the character reference &#13;
# (a raw CR reads back as LF; Excel's own escape `_x000D_` is decoded by Excel and LibreOffice but read as
# 7 characters by IronCalc, openpyxl and formulas). For the same reason a literal `_xHHHH_` cannot be stored:
# Excel decodes it (or, escaped as `_x005F_xHHHH_`, the others do not). XML 1.0 has no way at all to carry
# the other C0 controls, NUL, lone surrogates, U+FFFE and U+FFFF (xml_text refuses them).
_XSTRING_ESCAPE = re.compile("_x[0-9A-Fa-f]{4}_")


def cell_text(s: str) -> str:
    """A cell's string as the content of <t> (IllegalText if no reader would give exactly `s` back)."""
    esc = _XSTRING_ESCAPE.search(s)
    if esc:
        raise IllegalText(f"text contains {esc.group()!r}, which Excel reads back as the escaped character "
                          f"U+{esc.group()[2:6].upper()} and other readers as text")
    s = xml_text(s)
    return s.replace("\r", "&#13;") if "\r" in s else s


def formula_xml(text: str) -> str:
    text = text[1:] if text.startswith("=") else text
    return xml_text(_XLFN.sub(r"_xlfn.\1(", text))


def _num(v: float) -> str:
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("cannot store NaN or infinity in a cell")
    return str(v) if isinstance(v, int) else repr(float(v))


# ---- styles -----------------------------------------------------------------------------------
class Styles:
    """Collects the distinct Style objects used and numbers them as cellXfs."""

    def __init__(self) -> None:
        self.xf: dict[Style | None, int] = {None: 0}
        self._seen: dict[int, tuple[Style, int]] = {}  # by identity: hashing a Style costs more than the cell

    def id(self, style: Style | None) -> int:
        if style is None:
            return 0
        hit = self._seen.get(id(style))
        if hit is not None and hit[0] is style:
            return hit[1]
        if style not in self.xf:
            self.xf[style] = len(self.xf)
        self._seen[id(style)] = (style, self.xf[style])
        return self.xf[style]

    def xml(self) -> str:
        fonts, fills, numfmts, borders = ["<font><sz val=\"11\"/><name val=\"Calibri\"/></font>"], [], {}, []
        fills = ['<fill><patternFill patternType="none"/></fill>', '<fill><patternFill patternType="gray125"/></fill>']
        borders = ["<border><left/><right/><top/><bottom/><diagonal/></border>"]
        xfs = ['<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>']
        font_ids, fill_ids = {fonts[0]: 0}, {}
        for style in list(self.xf)[1:]:
            f = "<font>"
            f += "<b/>" if style.bold else ""
            f += "<i/>" if style.italic else ""
            f += "<u/>" if style.underline else ""
            f += f'<sz val="{style.size or 11}"/>'
            f += f'<color rgb="FF{style.color}"/>' if style.color else ""
            f += f'<name val="{xml_text(style.font or "Calibri")}"/></font>'
            font_id = font_ids.setdefault(f, len(fonts))
            if font_id == len(fonts):
                fonts.append(f)
            fill_id = 0
            if style.fill:
                fx = (f'<fill><patternFill patternType="solid"><fgColor rgb="FF{style.fill}"/>'
                      f'<bgColor indexed="64"/></patternFill></fill>')
                fill_id = fill_ids.setdefault(fx, len(fills))
                if fill_id == len(fills):
                    fills.append(fx)
            border_id = 0
            if style.border:
                if len(borders) == 1:
                    side = '<{0} style="thin"><color rgb="FF999999"/></{0}>'
                    borders.append("<border>" + "".join(side.format(s) for s in ("left", "right", "top", "bottom")) + "<diagonal/></border>")
                border_id = 1
            fmt_id = 0
            if style.num_fmt:
                fmt_id = numfmts.setdefault(style.num_fmt, 164 + len(numfmts))
            align = ""
            if style.wrap or style.halign or style.valign or style.indent:
                align = "<alignment"
                align += f' horizontal="{style.halign}"' if style.halign else ""
                align += f' vertical="{style.valign}"' if style.valign else ""
                align += ' wrapText="1"' if style.wrap else ""
                align += f' indent="{style.indent}"' if style.indent else ""
                align += "/>"
            xfs.append(
                f'<xf numFmtId="{fmt_id}" fontId="{font_id}" fillId="{fill_id}" borderId="{border_id}" xfId="0"'
                + (' applyNumberFormat="1"' if fmt_id else "")
                + (' applyFont="1"' if font_id else "")
                + (' applyFill="1"' if fill_id else "")
                + (' applyBorder="1"' if border_id else "")
                + (f' applyAlignment="1">{align}</xf>' if align else "/>")
            )
        nf = "".join(f'<numFmt numFmtId="{i}" formatCode="{xml_text(code)}"/>' for code, i in numfmts.items())
        return (
            XML_HEAD + f'<styleSheet xmlns="{NS}">'
            + (f'<numFmts count="{len(numfmts)}">{nf}</numFmts>' if numfmts else "")
            + f'<fonts count="{len(fonts)}">{"".join(fonts)}</fonts>'
            + f'<fills count="{len(fills)}">{"".join(fills)}</fills>'
            + f'<borders count="{len(borders)}">{"".join(borders)}</borders>'
            + '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            + f'<cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
            + '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            + '<dxfs count="0"/><tableStyles count="0"/></styleSheet>'
        )


# ---- sheet data -------------------------------------------------------------------------------
_COLS: list[str] = []


def _col(col: int) -> str:
    if not _COLS:
        _COLS.extend(col_letter(c) for c in range(MAX_COLS + 1))
    return _COLS[col]


def cached_xml(value) -> tuple[str, str]:
    """A formula's cached value as (type attribute, <v> element); nothing for a value not known."""
    if isinstance(value, Between):
        value = value.at
    if value is None or value is NOVALUE:
        return "", ""
    if isinstance(value, (bool, np.bool_)):
        return ' t="b"', f"<v>{int(value)}</v>"
    if isinstance(value, (int, np.integer)):
        return "", f"<v>{int(value)}</v>"
    if isinstance(value, (float, np.floating)):
        return ("", f"<v>{_num(float(value))}</v>") if np.isfinite(value) else ("", "")
    if isinstance(value, str):
        return ' t="str"', f"<v>{cell_text(value)}</v>"
    return "", ""


def _cell_xml(row: int, col: int, value, sid: int, cached=NOVALUE) -> str:
    r = f"{_col(col)}{row}"
    s = f' s="{sid}"' if sid else ""
    if value is None:
        return f'<c r="{r}"{s}/>'
    if isinstance(value, Formula):
        t, v = cached_xml(cached)
        return f'<c r="{r}"{s}{t}><f>{formula_xml(value.text)}</f>{v}</c>'
    if isinstance(value, bool):
        return f'<c r="{r}"{s} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        return f'<c r="{r}"{s}><v>{_num(value)}</v></c>'
    if isinstance(value, str):
        space = ' xml:space="preserve"' if value != value.strip() or "\n" in value or "\t" in value else ""
        return f'<c r="{r}"{s} t="inlineStr"><is><t{space}>{cell_text(value)}</t></is></c>'
    raise TypeError(f"cannot store {type(value).__name__} in a cell")


def _fmt_values(a: np.ndarray) -> list[str]:
    """Texts of one row of a block not coded by numblock: float32 as '%+.8e' (9 digits, like the fast
    path), integral values as integers, other floats in their shortest exact form."""
    if not np.all(np.isfinite(a)):
        raise ValueError("cannot store NaN or infinity in a cell")
    if a.dtype in (np.float32, np.float16):
        return sci_texts(a.astype(np.float32))
    if np.all(a == np.round(a)) and np.all(np.abs(a) < 2 ** 53):
        return [str(v) for v in a.astype(np.int64).tolist()]
    return [repr(v) for v in a.astype(np.float64).tolist()]


@dataclass
class Weights:
    """Rows of one float32 block, with the sheet's other cells in those rows as literal XML (`gaps[i]`
    comes before block row i, gaps[-1] after the last): coded straight to deflate by numblock."""

    label: str
    arr: np.ndarray
    rows: list[int]
    gaps: list[bytes]
    letters: list[bytes]
    sattr: bytes

    def jobs(self) -> Iterator[tuple[tuple, int]]:
        """(arguments of encode_chunk, weight cells) per chunk: up to CHUNK_CELLS cells whose row numbers
        have one width."""
        R, C = self.arr.shape
        step = max(1, CHUNK_CELLS // C)
        i = 0
        while i < R:
            lr = len(str(self.rows[i]))
            j = min(R, i + step, 10 ** lr - self.rows[0])
            gaps = self.gaps[i:j] + [self.gaps[R] if j == R else b""]
            yield (self.letters, self.sattr, lr, self.arr[i:j], self.rows[i:j], gaps), (j - i) * C
            i = j


def encode_chunk(letters: list[bytes], sattr: bytes, lr: int, arr: np.ndarray, rows: list[int],
                 gaps: list[bytes]) -> tuple[bytes, int, int]:
    """Worker job: rows of a weight block -> (raw deflate, crc32, uncompressed length)."""
    return coder(letters, sattr, lr).encode(arr, rows, gaps)


def compress_text(text: str, level: int) -> tuple[bytes, int, int]:
    """Worker job: XML text -> (raw deflate, crc32, length)."""
    data = text.encode("utf-8")
    return zlib_segment(data, level), zlib.crc32(data), len(data)


def sheet_rows(sheet: Sheet, styles: Styles, labels: dict | None = None,
               cached: dict | None = None) -> Iterator[str | Weights]:
    """The <row> elements of a sheet in order, merging single cells, array masters and blocks: as XML
    text, or as Weights for the rows of a lone float32 block (the fast path).

    cached: cached_values()'s dict for this sheet, what each formula shows before any recalculation (None: none)."""
    single: dict[int, dict[int, str]] = {}
    values = cached or {}
    for (r, c), (value, style) in sheet.cells.items():
        single.setdefault(r, {})[c] = _cell_xml(r, c, value, styles.id(style),
                                                values[(r, c)][0, 0] if (r, c) in values else NOVALUE)
    column_sid: dict[int, str] = {}

    def sattr(rr: int, cc: int) -> str:
        own = sheet.cells.get((rr, cc))
        if own is not None:
            sid = styles.id(own[1])
            return f' s="{sid}"' if sid else ""
        if cc not in column_sid:
            sid = styles.id(sheet.style_of_column(cc))
            column_sid[cc] = f' s="{sid}"' if sid else ""
        return column_sid[cc]

    for af in sheet.arrays:
        r, c = af.rng.r1, af.rng.c1
        _, style = sheet.cells.get((r, c), (None, None))
        sid = styles.id(style)
        s = f' s="{sid}"' if sid else ""
        vals = values.get((r, c))
        t, v = ("", "") if vals is None else _cached_texts(vals.reshape(-1)[:1])[0]
        single.setdefault(r, {})[c] = (f'<c r="{cell_ref(r, c)}"{s}{t}><f t="array" ref="{af.rng.a1}">'
                                       f'{formula_xml(af.text)}</f>{v}</c>')
        if vals is None or vals.size == 1:
            continue
        # the other cells of the array carry their values too: one text per row (a million cells at full size)
        letters = [_col(cc) for cc in range(af.rng.c1, af.rng.c2 + 1)]
        for i in range(vals.shape[0]):
            rr = r + i
            row = single.setdefault(rr, {})
            for cc in [k for k in row if c <= k <= af.rng.c2 and (rr, k) != (r, c)]:
                del row[cc]  # a formatted empty cell the array's value replaces
            attrs = [sattr(rr, cc) for cc in range(c, af.rng.c2 + 1)] if sheet.cells else None
            texts = _cached_texts(vals[i])
            parts = []
            for j, (t, v) in enumerate(texts):
                if not v or (i == 0 and j == 0):
                    continue
                a_ = attrs[j] if attrs is not None else sattr(rr, c + j)
                parts.append(f'<c r="{letters[j]}{rr}"{a_}{t}>{v}</c>')
            if parts:
                start = c + 1 if i == 0 else c
                row[start] = "".join(parts)
    blocks = sorted(sheet.blocks, key=lambda b: (b.row, b.col))
    sids = [styles.id(b.style) for b in blocks]
    srows = sorted(single)

    def row_text(r: int, extra=()) -> str:
        cells = sorted([*single.get(r, {}).items(), *extra])
        return f'<row r="{r}">{"".join(x for _, x in cells)}</row>'

    i = j = 0
    while j < len(blocks):
        members = [j]
        r1 = blocks[j].row
        r2 = r1 + blocks[j].shape[0] - 1
        j += 1
        while j < len(blocks) and blocks[j].row <= r2:  # blocks sharing rows are written together
            r2 = max(r2, blocks[j].row + blocks[j].shape[0] - 1)
            members.append(j)
            j += 1
        while i < len(srows) and srows[i] < r1:
            yield row_text(srows[i])
            i += 1
        i = bisect.bisect_right(srows, r2, lo=i)
        arrays = [blocks[m].array() for m in members]
        for a in arrays:
            if a.size and a.dtype.kind == "f" and not np.isfinite(a.sum(dtype=np.float64)) and not np.all(np.isfinite(a)):
                raise ValueError(f"{sheet.name}: cannot store NaN or infinity in a cell")
        b0 = blocks[members[0]]
        C = b0.shape[1]
        if (len(members) == 1 and arrays[0].dtype in (np.float32, np.float16) and b0.shape[0] == r2 - r1 + 1
                and not any(b0.col <= c < b0.col + C for r in range(r1, r2 + 1) for c in single.get(r, ()))):
            yield _weights(sheet, b0, arrays[0].astype(np.float32, copy=False), sids[members[0]], single, labels)
        else:
            fmt = []
            for m, a in zip(members, arrays):
                b = blocks[m]
                s = f' s="{sids[m]}"' if sids[m] else ""
                fmt.append((b, a, [f"<c r=\"{_col(b.col + k)}%d\"{s}><v>%s</v></c>" for k in range(b.shape[1])]))
            for r in range(r1, r2 + 1):
                extra = []
                for b, a, tmpl in fmt:
                    if b.row <= r < b.row + b.shape[0]:
                        texts = _fmt_values(a[r - b.row])
                        extra += [(b.col + k, t % (r, v)) for k, (t, v) in enumerate(zip(tmpl, texts))]
                if extra or r in single:
                    yield row_text(r, extra)
        del arrays
    while i < len(srows):
        yield row_text(srows[i])
        i += 1


def _weights(sheet: Sheet, b, arr: np.ndarray, sid: int, single: dict, labels: dict | None) -> Weights:
    R, C = b.shape
    rows = list(range(b.row, b.row + R))
    gaps, suffix = [], ""
    for r in rows:
        cells = single.get(r)
        if cells:
            items = sorted(cells.items())
            pre = "".join(x for c, x in items if c < b.col)
            post = "".join(x for c, x in items if c >= b.col + C)
        else:
            pre = post = ""
        gaps.append((suffix + f'<row r="{r}">' + pre).encode("utf-8"))
        suffix = post + "</row>"
    gaps.append(suffix.encode("utf-8"))
    key = (sheet.name, b.row, b.col, b.row + R - 1, b.col + C - 1)
    label = (labels or {}).get(key, sheet.name)
    letters = [_col(b.col + k).encode() for k in range(C)]
    return Weights(label, arr, rows, gaps, letters, f' s="{sid}"'.encode() if sid else b"")


def _extent(sheet: Sheet) -> str:
    rs = [r for r, _ in sheet.cells] + [a.rng.r2 for a in sheet.arrays] + [b.row + b.shape[0] - 1 for b in sheet.blocks]
    cs = [c for _, c in sheet.cells] + [a.rng.c2 for a in sheet.arrays] + [b.col + b.shape[1] - 1 for b in sheet.blocks]
    if not rs:
        return "A1"
    return f"A1:{cell_ref(max(rs), max(cs))}"


def sheet_xml(sheet: Sheet, styles: Styles, drawing_rid: str | None, active: bool,
              labels: dict | None = None, cached: dict | None = None) -> Iterator[str | Weights]:
    head = XML_HEAD + f'<worksheet xmlns="{NS}" xmlns:r="{NS_R}">'
    if sheet.tab_color:
        head += f'<sheetPr><tabColor rgb="FF{sheet.tab_color}"/></sheetPr>'
    head += f'<dimension ref="{_extent(sheet)}"/>'
    view = '<sheetView workbookViewId="0"' + (' tabSelected="1"' if active else "")
    view += f' zoomScale="{sheet.zoom}"' if sheet.zoom else ""
    if sheet.freeze and any(sheet.freeze):
        fr, fc = sheet.freeze
        top_left = cell_ref(fr + 1, fc + 1)
        pane = "bottomRight" if fr and fc else ("bottomLeft" if fr else "topRight")
        split = (f' xSplit="{fc}"' if fc else "") + (f' ySplit="{fr}"' if fr else "")
        view += (f'><pane{split} topLeftCell="{top_left}" activePane="{pane}" state="frozen"/>'
                 f'<selection pane="{pane}" activeCell="{top_left}" sqref="{top_left}"/></sheetView>')
    else:
        view += "/>"
    head += f"<sheetViews>{view}</sheetViews>"
    head += '<sheetFormatPr defaultRowHeight="15"/>'
    runs = sheet.column_runs()
    if runs:
        head += "<cols>" + "".join(
            f'<col min="{lo}" max="{hi}"' + (f' width="{w}" customWidth="1"' if w else ' width="9.140625"')
            + (f' style="{styles.id(st)}"' if st else "") + "/>"
            for lo, hi, w, st in runs
        ) + "</cols>"
    yield head + "<sheetData>"
    yield from sheet_rows(sheet, styles, labels, cached)
    tail = "</sheetData>"
    if sheet.merged:
        tail += f'<mergeCells count="{len(sheet.merged)}">' + "".join(f'<mergeCell ref="{m.a1}"/>' for m in sheet.merged) + "</mergeCells>"
    for prio, cs in enumerate(sheet.color_scales, start=1):
        cfvo = ""
        for p in cs.points:
            kind, _, val = p.partition(":")
            cfvo += f'<cfvo type="{kind}"' + (f' val="{val}"' if val else "") + "/>"
        colors = "".join(f'<color rgb="FF{c}"/>' for c in cs.colors)
        tail += (f'<conditionalFormatting sqref="{cs.rng.a1}"><cfRule type="colorScale" priority="{prio}">'
                 f"<colorScale>{cfvo}{colors}</colorScale></cfRule></conditionalFormatting>")
    if sheet.links:
        tail += "<hyperlinks>" + "".join(
            f'<hyperlink ref="{cell_ref(r, c)}" location="{xml_text(loc)}"'
            + (f' tooltip="{xml_text(tip)}"' if tip else "") + "/>"
            for (r, c), (loc, tip) in sorted(sheet.links.items())
        ) + "</hyperlinks>"
    tail += '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
    if drawing_rid:
        tail += f'<drawing r:id="{drawing_rid}"/>'
    yield tail + "</worksheet>"


# ---- charts -------------------------------------------------------------------------------------
def drawing_xml(sheet: Sheet) -> str:
    parts = []
    for i, ch in enumerate(sheet.charts, start=1):
        r, c = ch.anchor
        w, h = ch.size
        parts.append(
            f'<xdr:twoCellAnchor><xdr:from><xdr:col>{c - 1}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{r - 1}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:from>'
            f'<xdr:to><xdr:col>{c - 1 + w}</xdr:col><xdr:colOff>0</xdr:colOff><xdr:row>{r - 1 + h}</xdr:row><xdr:rowOff>0</xdr:rowOff></xdr:to>'
            f'<xdr:graphicFrame macro=""><xdr:nvGraphicFramePr><xdr:cNvPr id="{i + 1}" name="Chart {i}"/><xdr:cNvGraphicFramePr/></xdr:nvGraphicFramePr>'
            '<xdr:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/></xdr:xfrm><a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/chart">'
            f'<c:chart xmlns:c="http://schemas.openxmlformats.org/drawingml/2006/chart" r:id="rId{i}"/></a:graphicData></a:graphic></xdr:graphicFrame><xdr:clientData/></xdr:twoCellAnchor>'
        )
    return (XML_HEAD + '<xdr:wsDr xmlns:xdr="http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing" '
            f'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="{NS_R}">' + "".join(parts) + "</xdr:wsDr>")


def chart_xml(ch) -> str:
    def title(text: str) -> str:
        return (f'<c:title><c:tx><c:rich><a:bodyPr/><a:lstStyle/><a:p><a:pPr><a:defRPr sz="1200" b="1"/></a:pPr>'
                f'<a:r><a:rPr lang="en-US" sz="1200" b="1"/><a:t>{xml_text(text)}</a:t></a:r></a:p></c:rich></c:tx>'
                '<c:overlay val="0"/></c:title>')
    return (
        XML_HEAD + '<c:chartSpace xmlns:c="http://schemas.openxmlformats.org/drawingml/2006/chart" '
        f'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" xmlns:r="{NS_R}">'
        f'<c:chart>{title(ch.title)}<c:autoTitleDeleted val="0"/><c:plotArea><c:layout/>'
        f'<c:barChart><c:barDir val="{"bar" if ch.horizontal else "col"}"/><c:grouping val="clustered"/><c:varyColors val="0"/>'
        f'<c:ser><c:idx val="0"/><c:order val="0"/><c:tx><c:v>{xml_text(ch.y_title or ch.title)}</c:v></c:tx>'
        '<c:spPr><a:solidFill><a:srgbClr val="4472C4"/></a:solidFill></c:spPr><c:invertIfNegative val="0"/>'
        f'<c:cat><c:strRef><c:f>{xml_text(ch.categories.abs)}</c:f></c:strRef></c:cat>'
        f'<c:val><c:numRef><c:f>{xml_text(ch.values.abs)}</c:f></c:numRef></c:val></c:ser>'
        '<c:gapWidth val="50"/><c:axId val="1001"/><c:axId val="1002"/></c:barChart>'
        f'<c:catAx><c:axId val="1001"/><c:scaling><c:orientation val="{"maxMin" if ch.horizontal else "minMax"}"/></c:scaling>'
        '<c:delete val="0"/><c:axPos val="l"/><c:numFmt formatCode="General" sourceLinked="0"/><c:tickLblPos val="nextTo"/>'
        '<c:crossAx val="1002"/><c:crosses val="autoZero"/><c:auto val="1"/><c:lblAlgn val="ctr"/><c:lblOffset val="100"/></c:catAx>'
        '<c:valAx><c:axId val="1002"/><c:scaling><c:orientation val="minMax"/></c:scaling><c:delete val="0"/>'
        '<c:axPos val="b"/><c:majorGridlines/><c:numFmt formatCode="0%" sourceLinked="0"/><c:tickLblPos val="nextTo"/>'
        # with the categories top-down (maxMin) the value axis crosses at the last category: at the bottom
        f'<c:crossAx val="1001"/><c:crosses val="{"max" if ch.horizontal else "autoZero"}"/><c:crossBetween val="between"/></c:valAx></c:plotArea>'
        '<c:plotVisOnly val="1"/></c:chart></c:chartSpace>'
    )


# ---- the package ------------------------------------------------------------------------------
ZIP64_LIMIT = 0xFFFFFFFF
DOS_DATE, DOS_TIME = (0 << 9) | (1 << 5) | 1, 0  # 1980-01-01 00:00:00: no build dates in the file


class _Zip:
    """A minimal deterministic zip writer: deflated parts, zip64 where sizes need it."""

    def __init__(self, fh, level: int) -> None:
        self.fh = fh
        self.level = level
        self.entries: list[tuple[bytes, int, int, int, int]] = []  # name, crc, csize, usize, offset

    def _local(self, name: bytes, crc: int, csize: int, usize: int, zip64: bool) -> bytes:
        extra = struct.pack("<HHQQ", 1, 16, usize, csize) if zip64 else b""
        sizes = (ZIP64_LIMIT, ZIP64_LIMIT) if zip64 else (csize, usize)
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, 8, DOS_TIME, DOS_DATE, crc,
                           *sizes, len(name), len(extra)) + name + extra

    def add(self, name: str, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        c = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9)
        comp = c.compress(data) + c.flush()
        big = len(data) >= ZIP64_LIMIT or len(comp) >= ZIP64_LIMIT
        offset = self.fh.tell()
        self.fh.write(self._local(name.encode(), zlib.crc32(data), len(comp), len(data), big))
        self.fh.write(comp)
        self.entries.append((name.encode(), zlib.crc32(data), len(comp), len(data), offset))

    def stream(self, name: str) -> "_ZipStream":
        return _ZipStream(self, name.encode())

    def close(self) -> None:
        fh = self.fh
        cd_start = fh.tell()
        for name, crc, csize, usize, offset in self.entries:
            fields, extra = [], b""
            for v in (usize, csize, offset):
                if v >= ZIP64_LIMIT:
                    fields.append(v)
            if fields:
                extra = struct.pack("<HH", 1, 8 * len(fields)) + struct.pack(f"<{len(fields)}Q", *fields)
            z64 = bool(fields)
            fh.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | (45 if z64 else 20), 45 if z64 else 20,
                                 0, 8, DOS_TIME, DOS_DATE, crc, min(csize, ZIP64_LIMIT), min(usize, ZIP64_LIMIT),
                                 len(name), len(extra), 0, 0, 0, 0o644 << 16, min(offset, ZIP64_LIMIT)) + name + extra)
        cd_end = fh.tell()
        n, size = len(self.entries), cd_end - cd_start
        if n >= 0xFFFF or cd_start >= ZIP64_LIMIT or size >= ZIP64_LIMIT:
            fh.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, size, cd_start))
            fh.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), min(size, ZIP64_LIMIT),
                             min(cd_start, ZIP64_LIMIT), 0))


class _ZipStream:
    """One part written as consecutive raw-deflate segments that each end byte-aligned and not final;
    the local header (with zip64 sizes, unknown in advance) is patched at the end."""

    def __init__(self, z: _Zip, name: bytes) -> None:
        self.z, self.name = z, name
        self.offset = z.fh.tell()
        z.fh.write(z._local(name, 0, 0, 0, True))
        self.crc = self.csize = self.usize = 0

    def write(self, data: bytes, crc: int, usize: int) -> None:
        self.z.fh.write(data)
        self.crc = crc32_combine(self.crc, crc, usize)
        self.csize += len(data)
        self.usize += usize

    def close(self) -> None:
        fh = self.z.fh
        fh.write(FINAL_EMPTY)
        self.csize += len(FINAL_EMPTY)
        end = fh.tell()
        fh.seek(self.offset)
        fh.write(self.z._local(self.name, self.crc, self.csize, self.usize, True))
        fh.seek(end)
        self.z.entries.append((self.name, self.crc, self.csize, self.usize, self.offset))


def _workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


PROCESS_MIN_CELLS = 4_000_000  # below this, threads: forking costs more than it saves


def _worker_init(parent: int) -> None:
    """In each forked worker: the parent alone handles Ctrl-C (it stops the workers), and the kernel kills
    the worker when the parent dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # a handler the parent installed would run here too
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _executor(weight_cells: int, workers: int):
    """Worker processes for big books: the coder runs ~150 short numpy operations per slice, and two
    threads hand the GIL back and forth so often that they are slower than one. Forked (Linux), the
    workers start at once with the parent's modules; elsewhere, or for small books, threads."""
    if weight_cells >= PROCESS_MIN_CELLS and workers > 1 and sys.platform.startswith("linux"):
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
    return ThreadPoolExecutor(workers, thread_name_prefix="xlgpt-write")


def _stop(pool) -> None:
    """Abandon a pool at once (the write failed or was interrupted): kill worker processes, drop queued jobs."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_book(book: Book, path: str | os.PathLike, level: int = 1, progress=None, cached_values: bool = True) -> None:
    """Write atomically: a temporary file in the same folder, renamed over `path` only when complete (on
    any exception, KeyboardInterrupt included, the temporary file is removed and `path` is untouched).
    A symlink at `path` is followed (its target is replaced, the link stays); an existing file keeps its
    permissions, a new one gets 0666 minus the umask.

    `level`: zlib level of the XML text (weights are coded by numblock whatever the level).
    `progress(label, done, total)`: see the module docstring.
    `cached_values`: store each formula's expected value, so readers that do not recalculate show it."""
    path = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".xlgpt-", suffix=".xlsx.part", dir=path.parent)
    os.close(fd)
    try:
        with heap_reuse():
            _write(book, Path(tmp), level, progress, cached_values)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def calc_pr(book: Book, cached: bool) -> str:
    """How Excel calculates on open: a book with its values cached may open as it is (manual mode, for big
    books: F9 recalculates); without cached values it must calculate on load."""
    if cached and book.manual_calc:
        return '<calcPr calcId="191029" calcMode="manual" fullCalcOnLoad="0"/>'
    return '<calcPr calcId="191029" fullCalcOnLoad="1"/>'


def cached_values(book: Book) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    """sheet -> (row, col) of a formula (an array formula's first cell) -> the values it must compute: what
    readers that do not recalculate show."""
    out: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    for sheet, rng, want in book.formula_cells():
        out.setdefault(sheet, {})[(rng.r1, rng.c1)] = want
    return out


def _cached_texts(vals: np.ndarray) -> list[tuple[str, str]]:
    """cached_xml of every value of an array, row by row; numbers formatted in bulk."""
    flat = vals.ravel()
    if vals.dtype.kind == "f":
        ok = np.isfinite(flat)
        return [("", f"<v>{x!r}</v>") if good else ("", "") for x, good in zip(flat.tolist(), ok.tolist())]
    if vals.dtype.kind in "iu":
        return [("", f"<v>{x}</v>") for x in flat.tolist()]
    return [cached_xml(x) for x in flat]


def _write(book: Book, tmp: Path, level: int, progress, cached: bool = True) -> None:
    styles = Styles()
    sheets = book.sheets
    labels = {(r.sheet, r.r1, r.c1, r.r2, r.c2): name for name, r in book.names.items()}
    values = cached_values(book) if cached else {}
    total = sum(b.shape[0] * b.shape[1] for sh in sheets for b in sh.blocks)
    done = 0
    workers = _workers()
    with open(tmp, "wb") as fh:
        z = _Zip(fh, level)
        pool = _executor(total, workers)
        try:
            overrides = [("/xl/workbook.xml", f"{CT_BASE}.spreadsheetml.sheet.main+xml"),
                         ("/xl/styles.xml", f"{CT_BASE}.spreadsheetml.styles+xml")]
            n_drawing = n_chart = 0
            for i, sh in enumerate(sheets, start=1):
                overrides.append((f"/xl/worksheets/sheet{i}.xml", f"{CT_BASE}.spreadsheetml.worksheet+xml"))
                if sh.charts:
                    n_drawing += 1
                    overrides.append((f"/xl/drawings/drawing{n_drawing}.xml", f"{CT_BASE}.drawing+xml"))
                    for _ in sh.charts:
                        n_chart += 1
                        overrides.append((f"/xl/charts/chart{n_chart}.xml", f"{CT_BASE}.drawingml.chart+xml"))
            z.add("[Content_Types].xml", XML_HEAD
                  + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                  + '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                  + '<Default Extension="xml" ContentType="application/xml"/>'
                  + "".join(f'<Override PartName="{p}" ContentType="{t}"/>' for p, t in overrides) + "</Types>")
            z.add("_rels/.rels", XML_HEAD + f'<Relationships xmlns="{NS_PKG}">'
                  f'<Relationship Id="rId1" Type="{NS_R}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
            names = "".join(
                f'<definedName name="{name}">{xml_text(rng.abs)}</definedName>'
                for name, rng in sorted(book.names.items(), key=lambda kv: kv[0].lower())
            )
            sheet_entries = "".join(
                f'<sheet name="{xml_text(sh.name)}" sheetId="{i}"' + (' state="hidden"' if sh.hidden else "") + f' r:id="rId{i}"/>'
                for i, sh in enumerate(sheets, start=1)
            )
            z.add("xl/workbook.xml", XML_HEAD + f'<workbook xmlns="{NS}" xmlns:r="{NS_R}">'
                  f'<bookViews><workbookView activeTab="{book.active}"/></bookViews>'
                  f"<sheets>{sheet_entries}</sheets>"
                  + (f"<definedNames>{names}</definedNames>" if names else "")
                  + calc_pr(book, cached) + "</workbook>")
            rels = "".join(
                f'<Relationship Id="rId{i}" Type="{NS_R}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                for i in range(1, len(sheets) + 1)
            )
            rels += f'<Relationship Id="rId{len(sheets) + 1}" Type="{NS_R}/styles" Target="styles.xml"/>'
            z.add("xl/_rels/workbook.xml.rels", XML_HEAD + f'<Relationships xmlns="{NS_PKG}">{rels}</Relationships>')
            n_drawing = n_chart = 0
            for i, sh in enumerate(sheets, start=1):
                rid = None
                if sh.charts:
                    n_drawing += 1
                    rid = "rId1"
                    z.add(f"xl/worksheets/_rels/sheet{i}.xml.rels", XML_HEAD + f'<Relationships xmlns="{NS_PKG}">'
                          f'<Relationship Id="rId1" Type="{NS_R}/drawing" Target="../drawings/drawing{n_drawing}.xml"/></Relationships>')
                    z.add(f"xl/drawings/drawing{n_drawing}.xml", drawing_xml(sh))
                    crels = ""
                    for j, ch in enumerate(sh.charts, start=1):
                        n_chart += 1
                        crels += f'<Relationship Id="rId{j}" Type="{NS_R}/chart" Target="../charts/chart{n_chart}.xml"/>'
                        z.add(f"xl/charts/chart{n_chart}.xml", chart_xml(ch))
                    z.add(f"xl/drawings/_rels/drawing{n_drawing}.xml.rels",
                          XML_HEAD + f'<Relationships xmlns="{NS_PKG}">{crels}</Relationships>')
                out = z.stream(f"xl/worksheets/sheet{i}.xml")
                pending: deque = deque()  # (future, weight cells, label), written in order

                def drain(keep: int) -> None:
                    nonlocal done
                    while len(pending) > keep:
                        fut, cells, label = pending.popleft()
                        out.write(*fut.result())
                        if cells:
                            done += cells
                            if progress:
                                progress(label, done, total)

                text: list[str] = []
                size = 0
                for piece in sheet_xml(sh, styles, rid, i - 1 == book.active, labels, values.get(sh.name) if cached else None):
                    if isinstance(piece, str):
                        text.append(piece)
                        size += len(piece)
                        if size < TEXT_BYTES:
                            continue
                        pending.append((pool.submit(compress_text, "".join(text), level), 0, sh.name))
                        text, size = [], 0
                    else:
                        if text:
                            pending.append((pool.submit(compress_text, "".join(text), level), 0, sh.name))
                            text, size = [], 0
                        for args, cells in piece.jobs():
                            pending.append((pool.submit(encode_chunk, *args), cells, piece.label))
                            drain(2 * workers + 2)  # bounded memory: a few chunks in flight
                        del piece
                    drain(2 * workers + 2)
                if text:
                    pending.append((pool.submit(compress_text, "".join(text), level), 0, sh.name))
                drain(0)
                out.close()
            z.add("xl/styles.xml", styles.xml())
            z.close()
        except BaseException:
            _stop(pool)
            raise
        pool.shutdown(wait=True)


class ProgressBar:
    """A tqdm bar for write_book's progress callback: weight cells written, cells/s, the current tensor.
    Silent with quiet=True or when the stream is not a terminal."""

    def __init__(self, quiet: bool = False, file=None) -> None:
        self.file = file or sys.stderr
        self.enabled = not quiet and hasattr(self.file, "isatty") and self.file.isatty()
        self.bar = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", unit_scale=True, file=self.file, leave=False,
                            dynamic_ncols=True, desc="writing")
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(quiet: bool = False, file=None) -> ProgressBar:
    return ProgressBar(quiet, file)
