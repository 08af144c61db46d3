"""Pictures of the workbook for the docs: `python -m xlgpt.docs` writes docs/img/*.png.

It builds the default workbook (the toy model, the default prompt), then renders chosen parts of chosen tabs
headlessly, as a spreadsheet user would see them (values, colour scales, the chart, grid lines, row and column
headings):

1. a copy of the workbook in which only the tabs to picture are visible, each with a print area (the part to
   show) fitted to one page, grid lines and headings on (sheet XML and workbook.xml edited in the copy; the
   original is never touched);
2. LibreOffice, with a throw-away profile that makes it recalculate .xlsx files on load (so the pictures show
   what LibreOffice computes, not the values cached at build time), exports that copy to PDF: one page per
   visible tab, in tab order;
3. poppler's pdftoppm renders each page; the picture is cropped to what is drawn and saved as PNG.

A tab pictured twice (e.g. block_0's top and its attention heads) takes two rounds (two copies, two exports).
Needs `soffice` (LibreOffice 7.4 or later; XLGPT_SOFFICE to choose one) and `pdftoppm` (poppler-utils).

Regenerate the pictures whenever the layout changes:   python -m xlgpt.docs
(see docs/walkthrough.md; `--only NAME` renders a few, `--list` shows them all).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import XlgptError
from .xlsx.book import Book, col_letter

ROOT = Path(__file__).resolve().parent.parent
IMG_DIR = ROOT / "docs" / "img"
MAX_BYTES = 300_000  # each picture stays commit-sized
MAX_WIDTH = 1800  # pixels
ZOOM = 1.2  # relative to 100 % on screen (a column of width 9.14 is 64 px): small fonts stay readable
PALETTE = 256  # colours: an indexed PNG is a third of the size of an RGB one, and looks the same here

REGISTRY = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">\
<value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="UseOpenCL" oor:op="fuse"><value>false</value>\
</prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="FirstRun" oor:op="fuse"><value>false</value>\
</prop></item>
</oor:items>
"""


# ---- what to picture -----------------------------------------------------------------------------------
Area = tuple[int, int, int, int]  # r1, c1, r2, c2 (1-based, inclusive)


@dataclass(frozen=True)
class Shot:
    name: str  # the PNG's file name without .png
    sheet: str
    area: Callable[[Book], Area]
    caption: str
    book: str = "default"  # which workbook: "default" (`xlgpt build`) or "steered" (STEERED below)


def _last_row(book: Book, sheet: str) -> int:
    ws = book.sheet(sheet)
    rows = [r for r, _ in ws.cells] + [a.rng.r2 for a in ws.arrays] + [b.row + b.shape[0] - 1 for b in ws.blocks]
    return max(rows)


def _row_of(book: Book, sheet: str, prefix: str) -> int:
    """The first row whose column-B text starts with `prefix`."""
    for (r, c), (v, _) in sorted(book.sheet(sheet).cells.items()):
        if c == 2 and isinstance(v, str) and v.startswith(prefix):
            return r
    raise KeyError(f"{sheet}: no row starting with {prefix!r}")


def _title_row(book: Book, name: str) -> int:
    """The title row of the section holding the named range (title, formula, column labels, data)."""
    rng = book.names[name]
    ws = book.sheet(rng.sheet)
    for r in range(rng.r1 - 1, 0, -1):
        v, st = ws.cells.get((r, 2), (None, None))
        if isinstance(v, str) and st is not None and st.fill:
            return r
    return 1


def top(sheet: str, rows: int | None, cols: int) -> Callable[[Book], Area]:
    """Rows 1..rows (None: all) and columns A..cols."""
    return lambda book: (1, 1, rows or _last_row(book, sheet), cols)


def through(name: str, cols: int | None = None, extra: int = 0) -> Callable[[Book], Area]:
    """From row 1 down to the end of a named range (+ extra rows); columns A to the range's end (or `cols`)."""
    def area(book: Book) -> Area:
        rng = book.names[name]
        return (1, 1, rng.r2 + extra, cols or rng.c2)
    return area


def sections(first: str, last: str, cols: int | None = None, right: str | None = None) -> Callable[[Book], Area]:
    """The sections from the one holding `first` to the one holding `last`; columns A to `cols`, or to the end of
    the named range `right`, or to the wider of the two."""
    def area(book: Book) -> Area:
        a, b = book.names[first], book.names[last]
        c2 = cols or (book.names[right].c2 if right else max(a.c2, b.c2))
        return (_title_row(book, first), 1, b.r2, c2)
    return area


def start_area(book: Book) -> Area:
    return (1, 1, _row_of(book, "start", "Try it") - 2, 4)


def attention_area(book: Book) -> Area:
    """From A1: the maps of blocks 0 and 1, heads 0 and 1 (fewer if the model has fewer)."""
    names = book.names
    last = names["attention_1_h1" if "attention_1_h1" in names else "attention_0_h0"]
    return (1, 1, last.r2, last.c2)


def attention_maps(layer: int, heads: range) -> Callable[[Book], Area]:
    """The maps of one layer for some heads, with their titles and query labels (the last layer by default)."""
    def area(book: Book) -> Area:
        L = layer if layer >= 0 else sum(1 for n in book.names if re.fullmatch(r"attention_\d+_h0", n)) + layer
        H = sum(1 for n in book.names if re.fullmatch(rf"attention_{L}_h\d+", n))
        hs = [h for h in heads if h < H] or [H - 1]
        first, last = book.names[f"attention_{L}_h{hs[0]}"], book.names[f"attention_{L}_h{hs[-1]}"]
        return (first.r1 - 2, first.c1 - 1, last.r2, last.c2)
    return area


def prediction_area(book: Book) -> Area:
    ws = book.sheet("prediction")
    ch = ws.charts[0]
    return (1, 1, max(book.names["top_tokens"].r2, ch.anchor[0] + ch.size[1]), ch.anchor[1] + ch.size[0])


def steer_area(book: Book) -> Area:
    return (1, 1, book.names["steer_mask"].r2, 16)


SHOTS = [
    Shot("start", "start", start_area,
         "The start tab: the answer, GPT-2 in plain words and the pipeline as links to the tabs, in order."),
    Shot("prompt", "prompt", top("prompt", None, 3), "The prompt tab: the yellow cell is the input."),
    Shot("chars", "chars", top("chars", 34, 14), "chars: the prompt as characters, classes and UTF-8 bytes."),
    Shot("pretokens", "pretokens", top("pretokens", 34, 14), "pretokens: GPT-2's regular expression as a scan."),
    Shot("bpe", "bpe", top("bpe", 40, 16), "bpe: byte-pair merges, one band of rows per step."),
    Shot("tokens", "tokens", through("tokens_ids", cols=8), "tokens: one token id per position."),
    Shot("embeddings", "embeddings", through("embeddings_out", cols=20),
         "embeddings: a row of wte plus a row of wpe for every token."),
    Shot("block_ln", "block_0", through("block_0_ln_1", cols=20),
         "block_0, top: the residual stream entering the block and ln_1."),
    Shot("block_attention", "block_0", sections("block_0_scores_h0", "block_0_attn_h0", right="block_0_attn_sum_h0"),
         "block_0, head 0: scores, the softmax's max and sum, and the attention weights."),
    Shot("block_mlp", "block_0", sections("block_0_mlp_out", "block_0_resid_post", cols=20),
         "block_0, end: the MLP's output and the residual stream leaving the block."),
    Shot("attention", "attention", attention_area, "attention: every head's attention map, coloured."),
    Shot("attention_last", "attention", attention_maps(2, range(0, 2)), "attention: block 2's heads 0 and 1."),
    Shot("ln_f", "ln_f", through("ln_f", cols=20), "ln_f: the final layer norm."),
    Shot("lm_head", "lm_head", top("lm_head", 40, 8), "lm_head: a logit and a probability for every token."),
    Shot("prediction", "prediction", prediction_area, "prediction: the next token, the top 10 and their chart."),
    Shot("logit_lens", "logit_lens", through("lens_top_probs", extra=0),
         "logit_lens: the top tokens at every layer."),
    Shot("steer", "steer", steer_area, "steer: the controls, the vector (' Jedi' minus ' phone') and the mask.",
         book="steered"),
    Shot("steer_prediction", "prediction", prediction_area, "prediction, steered: ' lightsaber' instead of ' phone'.",
         book="steered"),
    Shot("params", "h0", top("h0", 24, 20), "h0: block 0's parameters, every weight a cell."),
]


# The steered workbook, the talk's surgery: the difference between the residual streams of " Jedi" and " phone"
# entering block 2, times 0.5, added at every position of "Mike pulls out his" (activation steering;
# `xlgpt build --prompt "Mike pulls out his" --steer-diff " Jedi" " phone" --steer-layer 2 --steer-coef 0.5`).
STEERED = dict(prompt="Mike pulls out his", plus=" Jedi", minus=" phone", layer=2, coef=0.5)


# ---- the workbook copy ----------------------------------------------------------------------------------
def _natural_size(book: Book, sheet: str, area: Area) -> tuple[float, float]:
    """The area's size on screen at 100 % in pixels (column widths in characters, rows of 20 px)."""
    ws = book.sheet(sheet)
    r1, c1, r2, c2 = area
    w = sum(ws.widths.get(c, 9.140625) * 7 + 5 for c in range(c1, c2 + 1)) + 40  # + the row headings
    return w, (r2 - r1 + 2) * 20


def _sheet_parts(z: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(sheet name, part path) in tab order."""
    wb = z.read("xl/workbook.xml").decode("utf-8")
    rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8")
    targets = {m.group(1): m.group(2) for m in re.finditer(r'<Relationship Id="([^"]+)"[^>]*?Target="([^"]+)"', rels)}
    targets.update({m.group(2): m.group(1) for m in re.finditer(r'<Relationship Target="([^"]+)"[^>]*?Id="([^"]+)"', rels)})
    out = []
    for m in re.finditer(r"<sheet ([^>]*)/>", wb):
        attrs = dict(re.findall(r'([\w:]+)="([^"]*)"', m.group(1)))
        t = targets[attrs["r:id"]].lstrip("/")
        out.append((_unxml(attrs["name"]), t if t.startswith("xl/") else "xl/" + t))
    return out


def _unxml(s: str) -> str:
    return s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")


def _xml(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _print_sheet(xml: str, landscape: bool) -> str:
    """Fit the print area to one page, with grid lines and headings, small margins and no header/footer."""
    xml = xml.replace(' tabSelected="1"', "")
    if "<sheetPr>" in xml:
        xml = xml.replace("</sheetPr>", '<pageSetUpPr fitToPage="1"/></sheetPr>', 1)
    elif "<sheetPr" in xml:
        raise XlgptError("unexpected <sheetPr ...> in the sheet XML")
    else:
        xml = re.sub(r"(<worksheet[^>]*>)", r'\1<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>', xml, count=1)
    setup = ('<printOptions gridLines="1" headings="1"/>'
             '<pageMargins left="0.2" right="0.2" top="0.2" bottom="0.2" header="0" footer="0"/>'
             f'<pageSetup paperSize="8" orientation="{"landscape" if landscape else "portrait"}" '
             'fitToWidth="1" fitToHeight="1"/>')
    xml, n = re.subn(r"(<printOptions[^>]*/>)?<pageMargins[^>]*/>(<pageSetup[^>]*/>)?", setup, xml, count=1)
    if not n:
        raise XlgptError("no <pageMargins> in the sheet XML")
    return xml


def print_copy(src: Path, dst: Path, areas: dict[str, tuple[Area, bool]]) -> list[str]:
    """Copy the workbook showing only `areas` (sheet -> (area, landscape)); returns the shown sheets in order."""
    with zipfile.ZipFile(src) as zin:
        parts = _sheet_parts(zin)
        order = [name for name, _ in parts]
        missing = set(areas) - set(order)
        if missing:
            raise XlgptError(f"the workbook has no tab {', '.join(sorted(missing))}")
        shown = [n for n in order if n in areas]
        wb = zin.read("xl/workbook.xml").decode("utf-8")

        def sheet_entry(m: re.Match) -> str:
            attrs = m.group(1)
            name = _unxml(re.search(r'name="([^"]*)"', attrs).group(1))
            attrs = re.sub(r'\s*state="[^"]*"', "", attrs)
            return f"<sheet {attrs}/>" if name in areas else f'<sheet {attrs.rstrip()} state="hidden"/>'

        wb = re.sub(r"<sheet ([^>]*?)\s*/>", sheet_entry, wb)
        wb = re.sub(r'activeTab="\d+"', f'activeTab="{order.index(shown[0])}"', wb)
        wb = re.sub(r'<definedName name="_xlnm\.Print_Area"[^>]*>.*?</definedName>', "", wb)
        pa = "".join(
            f'<definedName name="_xlnm.Print_Area" localSheetId="{order.index(n)}">'
            f"{_xml(quote(n))}!${col_letter(a[1])}${a[0]}:${col_letter(a[3])}${a[2]}</definedName>"
            for n, (a, _) in areas.items())
        wb = wb.replace("<definedNames>", "<definedNames>" + pa, 1) if "<definedNames>" in wb else \
            wb.replace("</sheets>", f"</sheets><definedNames>{pa}</definedNames>", 1)
        part_of = dict(parts)
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
            for item in zin.infolist():
                data = zin.read(item.filename)
                if item.filename == "xl/workbook.xml":
                    data = wb.encode("utf-8")
                else:
                    for n, (_, landscape) in areas.items():
                        if item.filename == part_of[n]:
                            data = _print_sheet(data.decode("utf-8"), landscape).encode("utf-8")
                zout.writestr(item, data)
    return shown


def quote(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


# ---- LibreOffice and poppler ---------------------------------------------------------------------------
def find_tools() -> tuple[str, str]:
    from .engines.libreoffice import find_soffice

    soffice = find_soffice()
    pdftoppm = shutil.which("pdftoppm")
    if not pdftoppm:
        raise XlgptError("pdftoppm is not installed: apt-get install poppler-utils")
    return soffice, pdftoppm


def to_pdf(soffice: str, xlsx: Path, profile: Path, timeout: float = 900) -> Path:
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(REGISTRY, encoding="utf-8")
    out = xlsx.with_suffix(".pdf")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TMPDIR"] = str(profile)
    cmd = [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore", "--nologo",
           "--nolockcheck", "--convert-to", "pdf", "--outdir", str(xlsx.parent), str(xlsx)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # its own process group: a hang is killed whole
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise XlgptError(f"LibreOffice did not export {xlsx.name} within {timeout:g} s") from None
    if proc.returncode or not out.exists():
        raise XlgptError(f"LibreOffice could not export {xlsx.name} to PDF: {(stderr or stdout).strip()}")
    return out


def pdf_pages(pdf: Path) -> int:
    info = shutil.which("pdfinfo")
    if info:
        text = subprocess.run([info, str(pdf)], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Pages:\s+(\d+)", text, re.M)
        if m:
            return int(m.group(1))
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))


def read_ppm(path: Path) -> np.ndarray:
    data = path.read_bytes()
    m = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not m:
        raise XlgptError(f"{path} is not a binary PPM")
    w, h = int(m.group(1)), int(m.group(2))
    return np.frombuffer(data, dtype=np.uint8, count=w * h * 3, offset=m.end()).reshape(h, w, 3)


def ink_box(img: np.ndarray, margin: int = 6) -> tuple[int, int, int, int]:
    """x, y, width, height of everything that is not white, plus a margin."""
    ink = (img < 245).any(axis=2)
    ys, xs = np.nonzero(ink)
    if not len(xs):
        raise XlgptError("the rendered page is blank")
    h, w = ink.shape
    x0, y0 = max(0, xs.min() - margin), max(0, ys.min() - margin)
    x1, y1 = min(w, xs.max() + 1 + margin), min(h, ys.max() + 1 + margin)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise XlgptError(f"{path} is not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def palette(img: np.ndarray, n: int = PALETTE, exact: int = 64, rounds: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Indexed colours for an RGB image: the `exact` most common colours as they are (white, grid lines, text,
    fills), the rest from a few rounds of k-means over the other colours (weighted by their pixel counts).
    Returns (palette [n, 3] uint8, indices [h, w] uint8)."""
    h, w, _ = img.shape
    flat = img.reshape(-1, 3).astype(np.uint32)
    key = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    cols = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], 1).astype(np.float32)
    if len(uniq) <= n:
        return cols.astype(np.uint8), inv.reshape(h, w).astype(np.uint8)
    by_count = np.argsort(-cnt, kind="stable")
    fixed, rest = by_count[:exact], by_count[exact:]
    pts, wts = cols[rest], cnt[rest].astype(np.float32)
    cent = pts[: n - exact].copy()  # start from the most common of the rest
    for _ in range(rounds):
        near = _nearest(pts, cent)
        sums = np.zeros_like(cent)
        np.add.at(sums, near, pts * wts[:, None])
        weight = np.bincount(near, weights=wts, minlength=len(cent))
        moved = weight > 0
        cent[moved] = sums[moved] / weight[moved, None].astype(np.float32)
    pal = np.vstack([cols[fixed], cent]).round().clip(0, 255)
    index = _nearest(cols, pal.astype(np.float32)).astype(np.uint8)
    return pal.astype(np.uint8), index[inv].reshape(h, w)


def _nearest(pts: np.ndarray, cent: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.empty(len(pts), dtype=np.int64)
    c2 = (cent ** 2).sum(1)
    for i in range(0, len(pts), chunk):
        p = pts[i:i + chunk]
        out[i:i + chunk] = (c2[None, :] - 2 * p @ cent.T).argmin(1)
    return out


def write_png(path: Path, img: np.ndarray) -> int:
    """An RGB image as an indexed (palette) PNG, deflated at level 9; returns its size in bytes."""
    pal, idx = palette(img)
    h, w = idx.shape
    raw = np.hstack([np.zeros((h, 1), np.uint8), idx]).tobytes()  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", pal.tobytes()) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path.write_bytes(data)
    return len(data)


def render_page(pdftoppm: str, pdf: Path, page: int, out: Path, natural_width: float, tmp: Path) -> Path:
    """Page `page` (1-based) as a PNG cropped to its ink, about ZOOM x its size on screen, under MAX_BYTES."""
    def ppm(dpi: float, crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
        base = tmp / f"page{page}"
        cmd = [pdftoppm, "-r", f"{dpi:.3f}", "-f", str(page), "-l", str(page), "-singlefile"]
        if crop:
            cmd += ["-x", str(crop[0]), "-y", str(crop[1]), "-W", str(crop[2]), "-H", str(crop[3])]
        subprocess.run(cmd + [str(pdf), str(base)], check=True, capture_output=True)
        return read_ppm(base.with_suffix(".ppm"))

    probe = 72.0
    x, y, w, h = ink_box(ppm(probe))
    dpi = probe * min(MAX_WIDTH, natural_width * ZOOM) / w
    for _ in range(8):
        s = dpi / probe
        img = ppm(dpi, (int(x * s), int(y * s), int(w * s) + 2, int(h * s) + 2))
        x1, y1, w1, h1 = ink_box(img)
        if write_png(out, img[y1:y1 + h1, x1:x1 + w1]) <= MAX_BYTES:
            return out
        dpi *= 0.85
    raise XlgptError(f"{out.name} stays above {MAX_BYTES} bytes")


def render(xlsx: Path, book: Book, shots: list[Shot], out_dir: Path, echo=print) -> list[Path]:
    """Render `shots` of the built workbook `xlsx` (laid out as `book`) into out_dir/NAME.png."""
    soffice, pdftoppm = find_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    rounds: list[list[Shot]] = []
    for shot in shots:  # a tab shows once per round
        for rnd in rounds:
            if all(s.sheet != shot.sheet for s in rnd):
                rnd.append(shot)
                break
        else:
            rounds.append([shot])
    written = []
    with tempfile.TemporaryDirectory(prefix="xlgpt-docs-") as tmpdir:
        tmp = Path(tmpdir)
        profile = tmp / "profile"
        for k, rnd in enumerate(rounds):
            t0 = time.perf_counter()
            areas, natural = {}, {}
            for s in rnd:
                a = s.area(book)
                w, h = _natural_size(book, s.sheet, a)
                areas[s.sheet] = (a, w > 1.3 * h)
                natural[s.sheet] = w
            copy = tmp / f"round{k}.xlsx"
            shown = print_copy(xlsx, copy, areas)
            pdf = to_pdf(soffice, copy, profile)
            pages = pdf_pages(pdf)
            if pages != len(shown):
                raise XlgptError(f"the PDF has {pages} pages for {len(shown)} tabs ({', '.join(shown)}): "
                                 "a print area did not fit one page")
            by_sheet = {s.sheet: s for s in rnd}
            for page, sheet in enumerate(shown, start=1):
                shot = by_sheet[sheet]
                png = render_page(pdftoppm, pdf, page, out_dir / f"{shot.name}.png", natural[sheet], tmp)
                written.append(png)
                w, h = png_size(png)
                echo(f"  {png.name:24s} {w:5d} x {h:<5d} {png.stat().st_size / 1000:6.1f} KB  ({sheet})")
            echo(f"round {k + 1} of {len(rounds)}: {len(rnd)} pictures in {time.perf_counter() - t0:.1f} s")
    return written


# ---- the command ---------------------------------------------------------------------------------------
def build_default(path: Path, live_tokenizer: bool = True, model: str | None = None, prompt: str | None = None,
                  steer: dict | None = None) -> Book:
    """Build a workbook like `xlgpt build` does (steer: STEERED-like activation steering); returns its Book (the
    layout the shots are located in)."""
    from .model import load_model
    from .stages import BuildOptions, build_book
    from .xlsx.writer import write_book

    opts = BuildOptions(live_tokenizer=live_tokenizer)
    if prompt is not None:
        opts.prompt = prompt
    if steer:
        from .steering import steering_from_args

        opts.prompt = steer.get("prompt", opts.prompt)
        args = argparse.Namespace(steer_diff=(steer["plus"], steer["minus"]), steer_layer=steer["layer"],
                                  steer_coef=steer["coef"], steer_vector=None, steer_sae=None, steer_mean=False,
                                  steer_positions=0, bos=False)
        opts.steer = steering_from_args(args, model)
    book = build_book(load_model(model), opts)
    write_book(book, path)
    return book


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xlgpt.docs", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(IMG_DIR), help="folder for the PNGs (default docs/img)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="render only these pictures")
    p.add_argument("--list", action="store_true", help="list the pictures and exit")
    p.add_argument("--python-tokenizer", action="store_true", help="build without the in-sheet tokenizer")
    p.add_argument("--keep", metavar="XLSX", help="also keep the (default) workbook that was pictured here")
    args = p.parse_args(argv)
    if args.list:
        for s in SHOTS:
            print(f"{s.name:18s} {s.sheet:12s} {s.caption}")
        return 0
    try:
        live = not args.python_tokenizer
        wanted = [s for s in SHOTS if not args.only or s.name in args.only]
        if args.only and len(wanted) != len(set(args.only)):
            unknown = set(args.only) - {s.name for s in wanted}
            raise XlgptError(f"no picture named {', '.join(sorted(unknown))} (see --list)")
        with tempfile.TemporaryDirectory(prefix="xlgpt-docs-book-") as tmp:
            for kind in ("default", "steered"):
                shots = [s for s in wanted if s.book == kind]
                if not shots:
                    continue
                path = Path(tmp) / f"{kind}.xlsx"
                if args.keep and kind == "default":
                    path = Path(args.keep)
                book = build_default(path, live_tokenizer=live, steer=STEERED if kind == "steered" else None)
                sheets = {s.name for s in book.sheets}
                shots = [s for s in shots if s.sheet in sheets]
                print(f"built the {kind} workbook; rendering {len(shots)} pictures into {args.out}")
                render(path, book, shots, Path(args.out))
    except XlgptError as e:
        print(f"xlgpt.docs: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
