"""Serialise a `Book` to .xlsx (SpreadsheetML), streaming.

Why hand-written: openpyxl's write-only mode formats ~0.25 M cells/s, so a 124M-cell GPT-2 takes
8-11 minutes; XlsxWriter ~0.29 M/s. Weight blocks here are formatted a row at a time with one C-level
`%` over a per-block row template and compressed on a second thread (zlib releases the GIL), which is
an order of magnitude faster (see `python -m xlgpt.bench`). Output is byte-for-byte reproducible:
fixed zip timestamps, fixed part order, no creation dates.
"""
from __future__ import annotations

import os
import queue
import re
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator
from xml.sax.saxutils import escape as _esc

import numpy as np

from .book import Book, Formula, Sheet, Style, cell_ref, col_letter, quote_sheet

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
CT_BASE = "application/vnd.openxmlformats-officedocument"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
CHUNK = 1 << 22

# Functions newer than Excel 2007 must be stored with their prefix, or LibreOffice shows #NAME?.
_XLFN = re.compile(r"(?<![\w.])(UNICODE|UNICHAR)\(")
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class IllegalText(ValueError):
    pass


def xml_text(s: str) -> str:
    if _ILLEGAL_XML.search(s):
        bad = _ILLEGAL_XML.search(s).group()
        raise IllegalText(f"text contains U+{ord(bad):04X}, which an .xlsx file cannot store")
    return _esc(s, {'"': "&quot;"})


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

    def id(self, style: Style | None) -> int:
        if style not in self.xf:
            self.xf[style] = len(self.xf)
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
def _cell_xml(row: int, col: int, value, sid: int) -> str:
    r = f"{col_letter(col)}{row}"
    s = f' s="{sid}"' if sid else ""
    if value is None:
        return f'<c r="{r}"{s}/>'
    if isinstance(value, Formula):
        return f'<c r="{r}"{s}><f>{formula_xml(value.text)}</f></c>'
    if isinstance(value, bool):
        return f'<c r="{r}"{s} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        return f'<c r="{r}"{s}><v>{_num(value)}</v></c>'
    if isinstance(value, str):
        space = ' xml:space="preserve"' if value != value.strip() or "\n" in value else ""
        return f'<c r="{r}"{s} t="inlineStr"><is><t{space}>{xml_text(value)}</t></is></c>'
    raise TypeError(f"cannot store {type(value).__name__} in a cell")


class _BlockRows:
    """Formats a numeric block row by row. float32 data is written with 9 significant digits
    (round-trips exactly to float32); float64 data with 17."""

    def __init__(self, block, sid: int) -> None:
        self.block = block
        s = f' s="{sid}"' if sid else ""
        self.array = None
        self.template = None
        self.sid_attr = s

    def load(self) -> None:
        a = self.block.array()
        if not np.all(np.isfinite(a)):
            raise ValueError("cannot store NaN or infinity in a cell")
        digits = 9 if a.dtype in (np.float32, np.float16) else 17
        fmt = f"%.{digits}g"
        c0 = self.block.col
        self.template = "".join(
            f'<c r="{col_letter(c0 + j)}\0"{self.sid_attr}><v>{fmt}</v></c>' for j in range(a.shape[1])
        )
        self.array = a

    def row_xml(self, i: int, row: int) -> str:
        return self.template.replace("\0", str(row)) % tuple(self.array[i].tolist())

    def free(self) -> None:
        self.array = None
        self.template = None


def sheet_rows(sheet: Sheet, styles: Styles) -> Iterator[str]:
    """Yield the <row> elements of a sheet in order, merging single cells, array masters and blocks."""
    single: dict[int, list[tuple[int, str]]] = {}
    for (r, c), (value, style) in sheet.cells.items():
        single.setdefault(r, []).append((c, _cell_xml(r, c, value, styles.id(style))))
    for af in sheet.arrays:
        r, c = af.rng.r1, af.rng.c1
        _, style = sheet.cells.get((r, c), (None, None))
        sid = styles.id(style)
        s = f' s="{sid}"' if sid else ""
        xml = f'<c r="{cell_ref(r, c)}"{s}><f t="array" ref="{af.rng.a1}">{formula_xml(af.text)}</f></c>'
        cells = single.setdefault(r, [])
        cells[:] = [(cc, x) for cc, x in cells if cc != c]
        cells.append((c, xml))
    blocks = sorted(sheet.blocks, key=lambda b: (b.row, b.col))
    starts: dict[int, list] = {}
    for b in blocks:
        starts.setdefault(b.row, []).append(_BlockRows(b, styles.id(b.style)))
    active: list[_BlockRows] = []
    keys = set(single) | set(starts)
    row = min(keys) if keys else None
    while row is not None:
        for br in starts.pop(row, []):
            br.load()
            active.append(br)
        segs = single.pop(row, [])
        for br in active:
            segs.append((br.block.col, br.row_xml(row - br.block.row, row)))
        if segs:
            segs.sort(key=lambda t: t[0])
            yield f'<row r="{row}">{"".join(x for _, x in segs)}</row>'
        for br in [b for b in active if b.block.row + b.block.shape[0] - 1 == row]:
            br.free()
            active.remove(br)
        if active:
            row += 1
        else:
            later = [r for r in single if r > row] + [r for r in starts if r > row]
            row = min(later) if later else None


def _extent(sheet: Sheet) -> str:
    rs = [r for r, _ in sheet.cells] + [a.rng.r2 for a in sheet.arrays] + [b.row + b.shape[0] - 1 for b in sheet.blocks]
    cs = [c for _, c in sheet.cells] + [a.rng.c2 for a in sheet.arrays] + [b.col + b.shape[1] - 1 for b in sheet.blocks]
    if not rs:
        return "A1"
    return f"A1:{cell_ref(max(rs), max(cs))}"


def sheet_xml(sheet: Sheet, styles: Styles, drawing_rid: str | None, active: bool) -> Iterator[str]:
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
    yield from sheet_rows(sheet, styles)
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
        return (f'<c:title><c:tx><c:rich><a:bodyPr/><a:p><a:r><a:t>{xml_text(text)}</a:t></a:r></a:p></c:rich></c:tx>'
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
        '<c:crossAx val="1001"/><c:crosses val="autoZero"/><c:crossBetween val="between"/></c:valAx></c:plotArea>'
        '<c:plotVisOnly val="1"/></c:chart></c:chartSpace>'
    )


# ---- the package ------------------------------------------------------------------------------
class _ZipStream:
    """Writes zip entries deterministically; large entries are compressed on a second thread."""

    def __init__(self, path: Path, level: int) -> None:
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.level = level

    def _info(self, name: str) -> zipfile.ZipInfo:
        zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
        zi.compress_type = zipfile.ZIP_DEFLATED
        zi.external_attr = 0o644 << 16
        # the attribute was renamed in Python 3.13
        setattr(zi, "compress_level" if hasattr(zi, "compress_level") else "_compresslevel", self.level)
        return zi

    def write(self, name: str, text: str) -> None:
        self.zf.writestr(self._info(name), text.encode("utf-8"))

    def stream(self, name: str, pieces: Iterable[str], on_bytes: Callable[[int], None] | None = None) -> None:
        q: queue.Queue = queue.Queue(maxsize=4)
        error: list[BaseException] = []

        def consume(fh) -> None:
            try:
                while (chunk := q.get()) is not None:
                    fh.write(chunk)
            except BaseException as e:  # pragma: no cover - surfaced below
                error.append(e)
                while q.get() is not None:
                    pass

        with self.zf.open(self._info(name), "w", force_zip64=True) as fh:
            t = threading.Thread(target=consume, args=(fh,), daemon=True)
            t.start()
            try:
                buf, size = [], 0
                for piece in pieces:
                    buf.append(piece)
                    size += len(piece)
                    if size >= CHUNK:
                        q.put("".join(buf).encode("utf-8"))
                        if on_bytes:
                            on_bytes(size)
                        buf, size = [], 0
                if buf:
                    q.put("".join(buf).encode("utf-8"))
            finally:
                q.put(None)
                t.join()
        if error:
            raise error[0]

    def close(self) -> None:
        self.zf.close()


def write_book(book: Book, path: str | os.PathLike, level: int = 1, progress=None) -> None:
    """Write atomically: a temporary file in the same folder, renamed over `path` only when complete.

    `progress(sheet_name, block_cells_done)` is called as weight blocks are written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".xlgpt-", suffix=".xlsx.part", dir=path.parent)
    os.close(fd)
    try:
        _write(book, Path(tmp), level, progress)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write(book: Book, tmp: Path, level: int, progress) -> None:
    styles = Styles()
    z = _ZipStream(tmp, level)
    try:
        sheets = book.sheets
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
        z.write("[Content_Types].xml", XML_HEAD
                + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                + '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                + '<Default Extension="xml" ContentType="application/xml"/>'
                + "".join(f'<Override PartName="{p}" ContentType="{t}"/>' for p, t in overrides) + "</Types>")
        z.write("_rels/.rels", XML_HEAD + f'<Relationships xmlns="{NS_PKG}">'
                f'<Relationship Id="rId1" Type="{NS_R}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        names = "".join(
            f'<definedName name="{name}">{xml_text(rng.abs)}</definedName>'
            for name, rng in sorted(book.names.items(), key=lambda kv: kv[0].lower())
        )
        sheet_entries = "".join(
            f'<sheet name="{xml_text(sh.name)}" sheetId="{i}"' + (' state="hidden"' if sh.hidden else "") + f' r:id="rId{i}"/>'
            for i, sh in enumerate(sheets, start=1)
        )
        z.write("xl/workbook.xml", XML_HEAD + f'<workbook xmlns="{NS}" xmlns:r="{NS_R}">'
                f'<bookViews><workbookView activeTab="{book.active}"/></bookViews>'
                f"<sheets>{sheet_entries}</sheets>"
                + (f"<definedNames>{names}</definedNames>" if names else "")
                + '<calcPr calcId="191029" fullCalcOnLoad="1"/></workbook>')
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{NS_R}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, len(sheets) + 1)
        )
        rels += f'<Relationship Id="rId{len(sheets) + 1}" Type="{NS_R}/styles" Target="styles.xml"/>'
        z.write("xl/_rels/workbook.xml.rels", XML_HEAD + f'<Relationships xmlns="{NS_PKG}">{rels}</Relationships>')
        n_drawing = n_chart = 0
        for i, sh in enumerate(sheets, start=1):
            rid = None
            if sh.charts:
                n_drawing += 1
                rid = "rId1"
                z.write(f"xl/worksheets/_rels/sheet{i}.xml.rels", XML_HEAD + f'<Relationships xmlns="{NS_PKG}">'
                        f'<Relationship Id="rId1" Type="{NS_R}/drawing" Target="../drawings/drawing{n_drawing}.xml"/></Relationships>')
                z.write(f"xl/drawings/drawing{n_drawing}.xml", drawing_xml(sh))
                crels = ""
                for j, ch in enumerate(sh.charts, start=1):
                    n_chart += 1
                    crels += f'<Relationship Id="rId{j}" Type="{NS_R}/chart" Target="../charts/chart{n_chart}.xml"/>'
                    z.write(f"xl/charts/chart{n_chart}.xml", chart_xml(ch))
                z.write(f"xl/drawings/_rels/drawing{n_drawing}.xml.rels",
                        XML_HEAD + f'<Relationships xmlns="{NS_PKG}">{crels}</Relationships>')
            on_bytes = (lambda n, name=sh.name: progress(name, n)) if progress else None
            z.stream(f"xl/worksheets/sheet{i}.xml", sheet_xml(sh, styles, rid, i - 1 == book.active), on_bytes)
        z.write("xl/styles.xml", styles.xml())
    finally:
        z.close()
