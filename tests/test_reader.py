"""The numeric reader: exact round trip of our weights, and correct (slower) reading of any xlsx."""
from __future__ import annotations

import numpy as np
import openpyxl
import pytest
from openpyxl.workbook.defined_name import DefinedName

from xlgpt.xlsx.reader import XlsxError
from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.xlsx import reader
from xlgpt.xlsx.book import Book
from xlgpt.xlsx.reader import read_named, read_names, read_range
from xlgpt.xlsx.writer import write_book


def numbers_by_openpyxl(path, sheet, ref) -> np.ndarray:
    ws = openpyxl.load_workbook(path, data_only=True)[sheet]  # formula cells: their cached values, as stored
    rows = [[c.value if isinstance(c.value, (int, float)) and not isinstance(c.value, bool) else np.nan for c in r]
            for r in ws[ref]]
    return np.array(rows, dtype=np.float64)


def same(a, b) -> bool:
    return a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "tiny.xlsx"
    model = load_model("tiny")
    write_book(build_book(model, BuildOptions(prompt="Hi there", context=8, live_tokenizer=False)), path)
    return path, model


def test_weights_round_trip_exactly(tiny):
    path, model = tiny
    got = read_names(path, list(model.params))
    for name, w in model.params.items():
        a = got[name]
        assert a.dtype == np.float64 and a.size == w.size
        assert np.array_equal(a.ravel(), [float("%.9g" % v) for v in w.ravel()]), name  # the decimal as written
        assert np.array_equal(a.astype(np.float32).ravel(), w.ravel()), name  # which is the float32 again
        assert np.array_equal(read_named(path, name), a)


def test_whole_sheets_equal_openpyxl(tiny):
    path, _ = tiny
    for sheet, ref in [("h0", "A1:BN158"), ("wte", "A1:R326"), ("tokens", "A1:D17"), ("prompt", "A1:B15")]:
        assert same(read_range(path, sheet, ref), numbers_by_openpyxl(path, sheet, ref)), sheet


def test_any_xlsx(tmp_path):
    """A workbook by openpyxl: shared strings, booleans, formulas, numbers in every notation."""
    path = tmp_path / "other.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data sheet"
    values = [0.1, -2, 3.5e-12, 1e22, 123456789012345678, 0.30000000000000004, -0.0, 7, 2.5e300]
    for i, v in enumerate(values, start=1):
        ws.cell(i, 1, v)
    ws["B1"] = "text"
    ws["B2"] = True
    ws["B3"] = "=A1*2"
    ws["B4"] = 't="n"'
    ws["C5"] = 4.25
    ws["AB3"] = 9
    wb.defined_names["vals"] = DefinedName("vals", attr_text="'Data sheet'!$A$1:$A$9")
    wb.save(path)
    got = read_range(path, "Data sheet", "A1:C9")
    assert same(got, numbers_by_openpyxl(path, "Data sheet", "A1:C9"))
    # what is stored (openpyxl writes 16 significant digits: 0.30000000000000004 is stored as 0.3)
    assert same(read_named(path, "vals"), numbers_by_openpyxl(path, "Data sheet", "A1:A9"))
    assert read_named(path, "vals")[0, 0] == 0.1 and np.signbit(read_named(path, "vals")[6, 0])
    assert read_range(path, "Data sheet", "AB3")[0, 0] == 9
    assert np.isnan(read_range(path, "Data sheet", "Z99")[0, 0])


def test_fast_path_matches_float_parsing():
    texts = [b"+1.23456789e-02", b"-9.99999999e+38", b"+0.00000000e+00", b"-0.00000000e+00", b"+1.40129846e-45",
             b"+5.00000000e-01", b"+1.00000000e+09", b"0.5", b"12", b"-1e-05"]
    buf = b"".join(texts)
    a = np.frombuffer(buf + bytes(300), np.uint8)
    lengths = np.array([len(t) for t in texts])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    got = reader._numbers(a, starts, lengths)
    expect = np.array([float(t) for t in texts])
    assert np.array_equal(got, expect) and np.signbit(got[3])
    rng = np.random.default_rng(0)
    v = np.concatenate([(0.02 * rng.standard_normal(5000)).astype(np.float32),
                        rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    v = v[np.isfinite(v)]
    texts = ["%+.8e" % x for x in v]
    buf = "".join(texts).encode()
    a = np.frombuffer(buf + bytes(300), np.uint8)
    got = reader._numbers(a, np.arange(len(texts)) * 15, np.full(len(texts), 15))
    assert np.array_equal(got, [float(t) for t in texts])


def test_errors(tiny, tmp_path):
    path, _ = tiny
    with pytest.raises(XlsxError, match="no defined name"):
        read_named(path, "nope")
    with pytest.raises(XlsxError, match="no sheet"):
        read_range(path, "nope", "A1")
    with pytest.raises(XlsxError, match="range reference"):
        read_range(path, "h0", "A1:B")
    (tmp_path / "x.xlsx").write_bytes(b"not a zip")
    with pytest.raises(XlsxError, match="cannot open"):
        read_range(tmp_path / "x.xlsx", "s", "A1")


def test_small_chunks(tmp_path, monkeypatch):
    """Pieces cut mid-row still give every cell its row."""
    monkeypatch.setattr(reader, "CHUNK", 700)
    b = Book()
    ws = b.sheet("s")
    a = np.arange(60 * 40, dtype=np.float32).reshape(60, 40) / 7
    ws.block(2, 2, a.shape, a)
    for r in range(2, 62):
        ws.write(r, 1, f"label {r}")
    path = tmp_path / "s.xlsx"
    write_book(b, path)
    got = read_range(path, "s", "B2:AO61")
    assert np.array_equal(got, [[float("%.9g" % x) for x in row] for row in a])
