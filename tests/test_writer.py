"""The streaming writer: every kind of cell, the fast weight path, determinism, atomicity, golden XML.

Regenerate the golden files after an intended change of the output:
    XLGPT_REGEN_GOLDEN=1 python -m pytest tests/test_writer.py -k golden
"""
from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import openpyxl
import pytest

from xlgpt.xlsx import deflate, numblock
from xlgpt.xlsx import writer as W
from xlgpt.xlsx.book import BarChart, Book, ColorScale, Range, Style, col_letter
from xlgpt.xlsx.reader import read_range
from xlgpt.xlsx.writer import IllegalText, ProgressBar, write_book

GOLDEN = Path(__file__).parent / "golden"
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def sheet_xml(path, i: int = 1) -> str:
    with zipfile.ZipFile(path) as z:
        return z.read(f"xl/worksheets/sheet{i}.xml").decode("utf-8")


def cells_of(path, i: int = 1) -> dict[str, ET.Element]:
    root = ET.fromstring(sheet_xml(path, i))
    return {c.get("r"): c for c in root.iter(f"{{{NS['m']}}}c")}


def small_book() -> Book:
    """A fixed book touching every feature of the writer (also the golden files' source)."""
    b = Book()
    ws = b.sheet("main")
    bold = Style(bold=True, fill="DDEBF7")
    ws.write(1, 1, "text", bold)
    ws.write(1, 2, "=1+1")  # text that looks like a formula stays text
    ws.write(1, 3, " padded ")
    ws.write(1, 4, 'quote " & <tag>')
    ws.write(2, 1, 42)
    ws.write(2, 2, 2.5)
    ws.write(2, 3, True)
    ws.write(2, 4, np.float32(0.1))
    ws.write(3, 1, None, Style(num_fmt="0.00"))
    ws.formula(3, 2, "=A2*2")
    ws.formula(3, 3, "=UNICODE(\"A\")")
    ws.array(Range("main", 4, 1, 4, 3), "=A2:C2*2", Style(num_fmt="0.0"))
    ws.freeze = (1, 1)
    ws.link(1, 1, "data", "B2", "to the data")
    ws.width(1, 12)
    w = np.array([[0.5, -0.25, 1e-3], [123.0, -7e-6, 3.4e-30]], np.float32)
    b.define("w", ws.block(6, 2, w.shape, w))
    ws.write(6, 1, "row label")
    ws.write(7, 5, "after")
    ws.color_scales.append(ColorScale(Range("main", 6, 2, 7, 4)))
    d = b.sheet("data")
    d.write(1, 1, "id")
    d.write(1, 2, "value")
    for i in range(3):
        d.write(2 + i, 1, f"t{i}")
        d.write(2 + i, 2, float(i) / 4)
    d.charts.append(BarChart("probabilities", Range("data", 2, 1, 4, 1), Range("data", 2, 2, 4, 2), (1, 4)))
    d.tab_color = "A6A6A6"
    b.define("values", Range("data", 2, 2, 4, 2))
    b.define("one", Range("main", 2, 1, 2, 1))
    return b


def test_every_kind_of_cell(tmp_path):
    path = tmp_path / "b.xlsx"
    write_book(small_book(), path)
    c = cells_of(path)
    assert c["B1"].get("t") == "inlineStr" and c["B1"].find("m:is/m:t", NS).text == "=1+1"
    assert c["B1"].find("m:f", NS) is None
    assert c["C1"].find("m:is/m:t", NS).get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    assert c["D1"].find("m:is/m:t", NS).text == 'quote " & <tag>'
    assert c["A2"].find("m:v", NS).text == "42"
    assert c["C2"].get("t") == "b" and c["C2"].find("m:v", NS).text == "1"
    assert c["B3"].find("m:f", NS).text == "A2*2" and c["B3"].find("m:v", NS) is None  # no cached values
    assert c["C3"].find("m:f", NS).text == '_xlfn.UNICODE("A")'
    f = c["A4"].find("m:f", NS)
    assert f.get("t") == "array" and f.get("ref") == "A4:C4"
    assert c["A3"].get("s") and c["A3"].find("m:v", NS) is None  # a styled empty cell
    assert all(cell.get("r") for cell in c.values())  # IronCalc needs r on every cell
    wb = openpyxl.load_workbook(path)
    ws = wb["main"]
    assert ws["A1"].value == "text" and ws["A1"].font.b
    assert ws["B2"].value == 2.5 and ws["C2"].value is True
    assert ws.freeze_panes == "B2"
    assert ws["A1"].hyperlink.location == "data!B2"
    assert ws.conditional_formatting
    assert wb.defined_names["w"].attr_text == "main!$B$6:$D$7"
    assert wb["data"].sheet_properties.tabColor.rgb == "FFA6A6A6"
    with zipfile.ZipFile(path) as z:
        assert "xl/charts/chart1.xml" in z.namelist() and "xl/drawings/drawing1.xml" in z.namelist()
        assert z.testzip() is None  # every part's CRC checks


def test_weights_exact_and_labels_around(tmp_path):
    path = tmp_path / "b.xlsx"
    write_book(small_book(), path)
    w = np.array([[0.5, -0.25, 1e-3], [123.0, -7e-6, 3.4e-30]], np.float32)
    ws = openpyxl.load_workbook(path)["main"]
    got = np.array([[ws.cell(6 + i, 2 + j).value for j in range(3)] for i in range(2)])
    assert np.array_equal(got, [[float("%.9g" % v) for v in r] for r in w])
    assert np.array_equal(got.astype(np.float32), w)
    assert ws["A6"].value == "row label" and ws["E7"].value == "after"
    c = cells_of(path)
    assert c["B6"].find("m:v", NS).text == "+5.00000000e-01"  # 9 significant digits, fixed width


@pytest.mark.parametrize("col0,row0,shape", [(24, 95, (12, 8)), (700, 9990, (15, 6)), (1, 1, (3, 1)), (3, 7, (1, 2))])
def test_block_layouts(tmp_path, col0, row0, shape):
    """Column letters growing (Z -> AA, ZZ -> AAA), row numbers growing a digit, one-column blocks."""
    rng = np.random.default_rng(col0)
    a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-12, 12, shape)).astype(np.float32)
    a[0, 0] = 0.0
    b = Book()
    ws = b.sheet("s")
    ws.block(row0, col0, shape, a)
    ws.write(row0 + 1, col0 + shape[1] + 2, "right of the block")
    if col0 > 1:
        ws.write(row0, 1, 1)
    path = tmp_path / "b.xlsx"
    write_book(b, path)
    ref = f"{col_letter(col0)}{row0}:{col_letter(col0 + shape[1] - 1)}{row0 + shape[0] - 1}"
    got = read_range(path, "s", ref)
    assert np.array_equal(got, np.array([[float("%.9g" % v) for v in r] for r in a]))
    ws2 = openpyxl.load_workbook(path)["s"]
    assert ws2.cell(row0 + 1, col0 + shape[1] + 2).value == "right of the block"
    assert ws2.cell(row0 + shape[0] - 1, col0 + shape[1] - 1).value == float("%.9g" % a[-1, -1])


def test_float64_int_and_overlapping_blocks(tmp_path):
    b = Book()
    ws = b.sheet("s")
    ws.block(1, 1, (2, 2), np.array([[0.1, 1 / 3], [2.0, -5.0]]))
    ws.block(1, 3, (2, 1), np.array([[1.0], [2.0]], np.float32))  # shares rows: the text path
    ws.block(4, 1, (1, 3), np.arange(3, dtype=float).reshape(1, 3))
    path = tmp_path / "b.xlsx"
    write_book(b, path)
    c = cells_of(path)
    assert c["A1"].find("m:v", NS).text == "0.1" and float(c["B1"].find("m:v", NS).text) == 1 / 3
    assert c["C2"].find("m:v", NS).text == "+2.00000000e+00"
    assert [c[f"{x}4"].find("m:v", NS).text for x in "ABC"] == ["0", "1", "2"]


def test_nan_and_illegal_text_are_clear_errors(tmp_path):
    b = Book()
    b.sheet("s").block(1, 1, (1, 2), np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="NaN or infinity"):
        write_book(b, tmp_path / "a.xlsx")
    b = Book()
    b.sheet("s").write(1, 1, "bell \x07 here")
    with pytest.raises(IllegalText, match="U\\+0007"):
        write_book(b, tmp_path / "b.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_deterministic_bytes(tmp_path):
    digests = []
    for i in range(2):
        p = tmp_path / f"{i}.xlsx"
        write_book(small_book(), p)
        digests.append(hashlib.sha256(p.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_tiny_model_builds_are_byte_identical(tmp_path):
    from xlgpt.model import load_model
    from xlgpt.stages import BuildOptions, build_book

    model = load_model("tiny")
    digests = []
    for i in range(2):
        p = tmp_path / f"{i}.xlsx"
        write_book(build_book(model, BuildOptions(prompt="Hi there", context=8, live_tokenizer=False)), p)
        digests.append(hashlib.sha256(p.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_worker_processes_give_the_same_bytes(tmp_path, monkeypatch):
    b = small_book()
    b.sheet("big").block(1, 1, (300, 200), np.random.default_rng(0).standard_normal((300, 200)).astype(np.float32))
    monkeypatch.setattr(W, "CHUNK_CELLS", 10_000)
    write_book(b, tmp_path / "threads.xlsx")
    monkeypatch.setattr(W, "PROCESS_MIN_CELLS", 0)
    write_book(b, tmp_path / "processes.xlsx")
    assert (tmp_path / "threads.xlsx").read_bytes() == (tmp_path / "processes.xlsx").read_bytes()


def test_atomic_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.xlsx"
    write_book(small_book(), path)
    before = path.read_bytes()

    def boom(*a, **k):
        yield "<worksheet>"
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(W, "sheet_xml", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_book(small_book(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.xlsx"]  # no temporary file left


def test_failure_inside_a_worker_job(tmp_path, monkeypatch):
    def bad(*a, **k):
        raise RuntimeError("worker failed")

    monkeypatch.setattr(numblock.BlockCoder, "encode", bad)
    b = Book()
    b.sheet("s").block(1, 1, (3, 4), np.ones((3, 4), np.float32))
    with pytest.raises(RuntimeError, match="worker failed"):
        write_book(b, tmp_path / "x.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_progress_callbacks(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "CHUNK_CELLS", 1000)
    b = Book()
    ws = b.sheet("s")
    b.define("big", ws.block(1, 1, (100, 50), np.ones((100, 50), np.float32)))
    calls = []
    write_book(b, tmp_path / "p.xlsx", progress=lambda label, done, total: calls.append((label, done, total)))
    assert calls[-1] == ("big", 5000, 5000) and len(calls) >= 5  # chunks also split where row numbers grow a digit
    assert all(a[1] < b[1] for a, b in zip(calls, calls[1:]))
    bar = ProgressBar(quiet=True)
    write_book(b, tmp_path / "r.xlsx", progress=bar)
    assert bar.bar is None  # quiet: nothing drawn


# ---- the weight coder ----------------------------------------------------------------------------------------
SPECIAL = np.array([0.0, -0.0, 1234567.125, 1.0, 0.1, 9.9999999e-2, 1e-9, 3.4e38, 1e-45, 1e8, 999999999.0, 1e9,
                    16777216.0, 0.5, 99999999.5, 9.9999996e-05, 1e-10, -3.4028235e38, 1.17549435e-38], np.float32)


def test_sci9_is_printf():
    rng = np.random.default_rng(0)
    a = np.concatenate([SPECIAL, (0.02 * rng.standard_normal(20000)).astype(np.float32),
                        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    a = a[np.isfinite(a)]
    assert numblock.sci_texts(a) == ["%+.8e" % float(v) for v in a]


def test_written_values():
    rng = np.random.default_rng(1)
    a = np.concatenate([SPECIAL, (0.02 * rng.standard_normal(20000)).astype(np.float32),
                        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    a = a[np.isfinite(a)]
    got = numblock.written_values(a)
    assert np.array_equal(got, [float("%.9g" % v) for v in a])
    assert np.array_equal(np.signbit(got), np.signbit(a))


@pytest.mark.parametrize("C", [1, 2, 3, 30, 800, 2304])
def test_block_coder_stream(C):
    rng = np.random.default_rng(C)
    R = 7
    a = (0.02 * rng.standard_normal((R, C))).astype(np.float32)
    letters = [col_letter(3 + k).encode() for k in range(C)]
    rows = list(range(96, 96 + R))
    before = numblock.STATS["zlib_slices"]
    data = b""
    crc, n = 0, 0
    # rows 96..99 (2 digits), then 100..102 (3 digits): one coder per width
    for lo, hi, lr in ((0, 4, 2), (4, 7, 3)):
        coder = numblock.coder(letters, b' s="2"', lr)
        g = [b'<row r="%d">' % r for r in rows[lo:hi]] + [b"</row>"]
        d, c, u = coder.encode(a[lo:hi], rows[lo:hi], g)
        expect = coder.text(rows[lo:hi], g[:-1], a[lo:hi]) + g[-1]
        assert zlib.decompress(d + deflate.FINAL_EMPTY, -15) == expect
        assert c == zlib.crc32(expect) and u == len(expect)
        data += d
        crc, n = deflate.crc32_combine(crc, c, u), n + u
    assert len(zlib.decompress(data + deflate.FINAL_EMPTY, -15)) == n  # chunks concatenate
    if C >= 30:  # real tensors never need the zlib fallback (tiny blocks may: every symbol is rare there)
        assert numblock.STATS["zlib_slices"] == before

def test_block_coder_falls_back_for_long_codes(monkeypatch):
    """A unit over 64 bits (never seen with real codes): that slice is stored through zlib instead."""
    orig = numblock._Entries.encode

    def long(self, cl, cc):
        v, n = orig(self, cl, cc)
        return v, n + 70

    monkeypatch.setattr(numblock._Entries, "encode", long)
    C, R = 40, 5
    a = np.random.default_rng(1).standard_normal((R, C)).astype(np.float32)
    letters = [col_letter(1 + k).encode() for k in range(C)]
    coder = numblock.BlockCoder(letters, b"", 1)
    rows = list(range(1, R + 1))
    gaps = [b"<row>"] * R + [b"</row>"]
    before = numblock.STATS["zlib_slices"]
    d, c, u = coder.encode(a, rows, gaps)
    expect = coder.text(rows, gaps[:-1], a) + gaps[-1]
    assert zlib.decompress(d + deflate.FINAL_EMPTY, -15) == expect and c == zlib.crc32(expect)
    assert numblock.STATS["zlib_slices"] > before


def test_crc32_combine():
    a, b = os.urandom(1000), os.urandom(12345)
    assert deflate.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    assert deflate.crc32_combine(zlib.crc32(a), zlib.crc32(b""), 0) == zlib.crc32(a)


def test_pack_bits_against_python():
    rng = np.random.default_rng(3)
    lens = rng.integers(0, 65, 5000).astype(np.uint64)
    vals = np.array([int(rng.integers(0, 2**62)) & ((1 << int(n)) - 1) for n in lens], np.uint64)
    data, tail, tail_bits = deflate.pack_bits(vals, lens)
    acc, pos = 0, 0
    for v, n in zip(vals.tolist(), lens.tolist()):
        acc |= v << pos
        pos += n
    assert len(data) == pos // 8 and tail_bits == pos % 8
    assert int.from_bytes(data, "little") | (tail << (8 * len(data))) == acc


# ---- golden files ---------------------------------------------------------------------------------------------
GOLDEN_PARTS = ["xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml", "xl/workbook.xml", "xl/styles.xml",
                "xl/charts/chart1.xml", "xl/drawings/drawing1.xml", "[Content_Types].xml"]


def test_golden_xml(tmp_path):
    path = tmp_path / "golden.xlsx"
    write_book(small_book(), path)
    with zipfile.ZipFile(path) as z:
        parts = {p: z.read(p) for p in GOLDEN_PARTS}
    if os.environ.get("XLGPT_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for p, data in parts.items():
            (GOLDEN / p.replace("/", "__")).write_bytes(data)
        pytest.skip("golden files regenerated")
    for p, data in parts.items():
        known = (GOLDEN / p.replace("/", "__")).read_bytes()
        assert data == known, f"{p} differs from tests/golden (XLGPT_REGEN_GOLDEN=1 to accept a change)"
