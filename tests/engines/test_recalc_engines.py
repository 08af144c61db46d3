"""The three recalculation engines agree on a small workbook: values, inputs, arrays, errors, names."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.formula import ArrayFormula

from xlgpt.engines import DEFAULT_ENGINE, ENGINES, defined_names, open_workbook, read_name
from xlgpt.engines.base import CellError
from xlgpt.errors import XlgptError

HAVE_SOFFICE = bool(shutil.which("soffice") or os.environ.get("XLGPT_SOFFICE"))
needs_lo = pytest.mark.skipif(not HAVE_SOFFICE, reason="LibreOffice (soffice) is not installed")
ENGINE_PARAMS = [
    pytest.param(e, marks=needs_lo) if e == "libreoffice" else e for e in ENGINES
]
REPO = Path(__file__).resolve().parents[2]


def _text(ws, ref, value):
    """A text cell even if it looks like a formula."""
    ws[ref] = value
    ws[ref].data_type = "s"


def make_workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "in"
    ws["A1"] = "hello"
    ws["A2"] = 3.5
    ws["A3"] = True
    _text(ws, "A4", "=1+1")
    ws["B1"] = "=LEN(A1)"
    ws["B2"] = "=A2*2"
    ws["B3"] = "=1/0"
    ws["B4"] = "=NA()"
    ws["B5"] = '="x"+1'
    ws["B6"] = '=_xlfn.UNICODE("A")'
    ws["B7"] = "=NOT(A3)"
    ws["B8"] = '=A1&"!"'
    ws["B9"] = "=SQRT(-1)"
    ws["B10"] = "=LEN(A4)"
    ws["B11"] = "=IFERROR(1/0,-1)"
    ws["B12"] = "=SUM(C1:C3)"
    ws["C1"] = 1
    ws["C3"] = 2
    ws["B13"] = "=ISTEXT(A1)"
    ws["B14"] = '=IF(A2>3,"big","small")'

    b = wb.create_sheet("block 0")
    for r in range(2):
        for c in range(3):
            b.cell(row=r + 1, column=c + 1, value=r * 3 + c + 1)  # A1:C2 = [[1,2,3],[4,5,6]]
    for r in range(3):
        for c in range(2):
            b.cell(row=r + 4, column=c + 1, value=(r + 1) * (c + 2))  # A4:B6 = [[2,3],[4,6],[6,9]]
    b["E1"] = ArrayFormula("E1:F2", "=MMULT(A1:C2,A4:B6)")
    b["E4"] = ArrayFormula("E4:G4", "=A1:C1*in!A2")
    b["E6"] = ArrayFormula("E6:F8", "=TRANSPOSE(A1:C2)")
    b["H1"] = ArrayFormula("H1:J1", "=EXP(A1:C1)+in!C1")

    q = wb.create_sheet("it's")
    q["B2"] = 42

    wb.defined_names["inp"] = DefinedName("inp", attr_text="in!$A$1")
    wb.defined_names["mm"] = DefinedName("mm", attr_text="'block 0'!$E$1:$F$2")
    wb.defined_names["quoted"] = DefinedName("quoted", attr_text="'it''s'!$B$2")
    wb.defined_names["half"] = DefinedName("half", attr_text="0.5")  # a constant, not a range
    wb.save(path)
    return path


MMULT = [[28.0, 42.0], [64.0, 96.0]]
EXPECTED_IN = {  # in!B1:B14 after open
    "B1": 5.0, "B2": 7.0, "B3": CellError("#DIV/0!"), "B4": CellError("#N/A"), "B5": CellError("#VALUE!"),
    "B6": 65.0, "B7": False, "B8": "hello!", "B9": CellError("#NUM!"), "B10": 4.0, "B11": -1.0,
    "B12": 3.0, "B13": True, "B14": "big",
}


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    return make_workbook(tmp_path_factory.mktemp("book") / "small.xlsx")


@pytest.fixture(scope="module", params=ENGINE_PARAMS)
def fresh(request, book):
    """One session per engine, shared by the tests that only read."""
    with open_workbook(book, request.param) as s:
        yield s


def _same(a, b) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return type(a) is type(b) and a == b
    if isinstance(b, float):
        return type(a) is float and abs(a - b) <= 1e-12 * max(1.0, abs(b))
    return type(a) is type(b) and a == b


def _check(got: np.ndarray, expected) -> None:
    expected = np.array(expected, dtype=object)
    assert isinstance(got, np.ndarray) and got.dtype == object
    assert got.shape == expected.shape, (got.shape, expected.shape)
    bad = [(i, got.flat[i], expected.flat[i]) for i in range(got.size) if not _same(got.flat[i], expected.flat[i])]
    assert not bad, bad


# ---- engine-independent ------------------------------------------------------------------

def test_engine_list():
    assert ENGINES == ("ironcalc", "libreoffice", "formulas", "gnumeric")
    assert DEFAULT_ENGINE == "ironcalc"


def test_defined_names(book):
    names = defined_names(book)
    assert names == {"inp": ("in", "A1"), "mm": ("block 0", "E1:F2"), "quoted": ("it's", "B2")}


def test_defined_names_bad_file(tmp_path):
    with pytest.raises(XlgptError):
        defined_names(tmp_path / "missing.xlsx")
    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a zip")
    with pytest.raises(XlgptError):
        defined_names(junk)


def test_open_errors(tmp_path, book):
    with pytest.raises(XlgptError, match="unknown engine"):
        open_workbook(book, "excel")
    with pytest.raises(XlgptError, match="not found"):
        open_workbook(tmp_path / "missing.xlsx")
    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a zip")
    with pytest.raises(XlgptError):
        open_workbook(junk)


def test_ironcalc_load_failure_is_one_line(tmp_path):
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("hello.txt", "no workbook in here")
    with pytest.raises(XlgptError, match="IronCalc could not load") as e:
        open_workbook(bad, "ironcalc")
    assert "\n" not in str(e.value)


def test_ironcalc_noise_is_dropped(tmp_path, capfd):
    """A formula cell without a cached value makes IronCalc print 'Unexpected type (empty)'."""
    src = make_workbook(tmp_path / "src.xlsx")
    dst = tmp_path / "noisy.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                assert b"<f>A2*2</f><v />" in data
                data = data.replace(b"<f>A2*2</f><v />", b"<f>A2*2</f>")
            zout.writestr(info, data)
    capfd.readouterr()
    with open_workbook(dst, "ironcalc") as s:
        assert s.read("in", "B2")[0, 0] == 7.0
    out, err = capfd.readouterr()
    assert "Unexpected type" not in out + err


def test_formulas_refuses_big_workbooks(book, monkeypatch):
    monkeypatch.setenv("XLGPT_FORMULAS_MAX_CELLS", "10")
    with pytest.raises(XlgptError, match=r"formulas engine would need about .* min and .* GB for .* cells; "
                                         r"use --engine ironcalc or libreoffice"):
        open_workbook(book, "formulas")


def test_formulas_cell_estimate(book):
    from xlgpt.engines.formulas_engine import estimate_cells
    n = estimate_cells(str(book))
    assert n == 49  # 20 + 16 + 1 stored cells, and the 12 cells the four array formulas fill beyond their first


def test_libreoffice_missing(book, monkeypatch):
    monkeypatch.setenv("XLGPT_SOFFICE", "/nonexistent/soffice")
    with pytest.raises(XlgptError, match="LibreOffice is not installed: apt-get install"):
        open_workbook(book, "libreoffice")


@needs_lo
def test_libreoffice_without_uno(book, monkeypatch):
    monkeypatch.setenv("XLGPT_UNO_PYTHON", sys.executable)  # our python has no uno
    try:
        import uno  # noqa: F401
        pytest.skip("this python has uno")
    except ImportError:
        pass
    with pytest.raises(XlgptError, match="LibreOffice is not installed: apt-get install"):
        open_workbook(book, "libreoffice")


# ---- every engine ----------------------------------------------------------------------------

def test_values_after_open(fresh):
    _check(fresh.read("in", "A1:A4"), [["hello"], [3.5], [True], ["=1+1"]])
    _check(fresh.read("in", "B1:B14"), [[v] for v in EXPECTED_IN.values()])
    assert type(fresh.read("in", "B1")[0, 0]) is float
    assert fresh.read("in", "B3")[0, 0] == CellError("#DIV/0!")


def test_array_formulas(fresh):
    _check(fresh.read("block 0", "E1:F2"), MMULT)
    _check(fresh.read("block 0", "E4:G4"), [[3.5, 7.0, 10.5]])
    _check(fresh.read("block 0", "E6:F8"), [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]])
    got = fresh.read("block 0", "H1:J1").astype(float)
    np.testing.assert_allclose(got, [np.exp([1.0, 2.0, 3.0]) + 1.0], rtol=1e-14)
    _check(fresh.read("block 0", "F2"), [[96.0]])  # a cell inside an array result


def test_empty_cells(fresh):
    _check(fresh.read("in", "C2"), [[None]])
    _check(fresh.read("in", "X100:Z101"), [[None] * 3] * 2)
    _check(fresh.read("block 0", "D1:D3"), [[None]] * 3)


def test_read_name(fresh, book):
    _check(read_name(fresh, book, "mm"), MMULT)
    _check(read_name(fresh, defined_names(book), "inp"), [["hello"]])
    _check(read_name(fresh, book, "quoted"), [[42.0]])
    with pytest.raises(XlgptError, match="no defined name"):
        read_name(fresh, book, "nope")


def test_bad_references(fresh):
    with pytest.raises(XlgptError, match="no sheet named"):
        fresh.read("nope", "A1")
    with pytest.raises(XlgptError):
        fresh.read("in", "A1:B")
    with pytest.raises(XlgptError, match="no sheet named"):
        fresh.set_cell("nope", "A1", 1.0)


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_set_cells_and_recalc(book, engine):
    with open_workbook(book, engine) as s:
        s.set_cell("in", "A2", 10)  # number (an int is stored as a number)
        s.set_cell("in", "A1", "=1+1")  # text, never a formula
        s.set_cell("in", "A3", False)
        s.set_cell("in", "C2", 4.5)  # an empty cell inside a referenced range
        s.recalc()
        _check(s.read("in", "A1:A3"), [["=1+1"], [10.0], [False]])
        _check(s.read("in", "B1:B2"), [[4.0], [20.0]])
        _check(s.read("in", "B7:B8"), [[True], ["=1+1!"]])
        _check(s.read("in", "B12:B14"), [[7.5], [True], ["big"]])
        _check(s.read("block 0", "E4:G4"), [[10.0, 20.0, 30.0]])
        np.testing.assert_allclose(s.read("block 0", "H1:J1").astype(float),
                                   [np.exp([1.0, 2.0, 3.0]) + 1.0], rtol=1e-14)

        for text, length in (("-3", 2.0), ("@x", 2.0), ("TRUE", 4.0), ("'q", 2.0), ("#N/A", 4.0)):
            s.set_cell("in", "A1", text)
            s.recalc()
            _check(s.read("in", "A1:B1"), [[text, length]])
        _check(s.read("in", "B13"), [[True]])  # ISTEXT: "#N/A" typed in is text, not an error

        s.set_cell("block 0", "A1", 0.5)  # flows through MMULT
        s.set_cell("in", "A2", 1.0)
        s.recalc()
        _check(s.read("block 0", "E1:F2"), [[27.0, 40.5], [64.0, 96.0]])
        _check(s.read("in", "B14"), [["small"]])

        s.set_cell("in", "Z50", "lonely")  # a cell no formula uses
        s.recalc()
        _check(s.read("in", "Z50"), [["lonely"]])
        with pytest.raises(TypeError):
            s.set_cell("in", "A1", object())
        if engine == "libreoffice":
            pgid, profile = s._soffice_pid, s.profile
            assert _live_in_group(pgid), "soffice should be running"
    if engine == "libreoffice":
        _assert_gone(pgid, profile)


# ---- LibreOffice processes ---------------------------------------------------------------------

def _live_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _assert_gone(pgid: int, profile: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (_live_in_group(pgid) or os.path.exists(profile)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _live_in_group(pgid), "soffice processes left behind"
    assert not os.path.exists(profile), "temporary LibreOffice profile left behind"
    from xlgpt.engines.libreoffice import _pipe_files
    assert not _pipe_files(None, profile), "stale LibreOffice pipe left in /tmp"


@needs_lo
def test_libreoffice_dies_with_its_parent(book, tmp_path):
    """If the python process that opened the session is killed, soffice goes too."""
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from xlgpt.engines import open_workbook
        s = open_workbook({str(book)!r}, "libreoffice")
        print(s._soffice_pid, s.profile, flush=True)
        time.sleep(120)
    """))
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line, "the holder process failed to open the workbook"
        pgid, profile = int(line.split()[0]), line.split()[1]
        assert _live_in_group(pgid)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    _assert_gone(pgid, profile)


@needs_lo
def test_libreoffice_worker_killed(book):
    """If the worker dies, reads fail with a one-line XlgptError and close() still kills soffice."""
    s = open_workbook(book, "libreoffice")
    pgid, profile = s._soffice_pid, s.profile
    try:
        s._proc.kill()
        s._proc.wait()
        with pytest.raises(XlgptError, match="worker exited unexpectedly"):
            s.read("in", "A1")
    finally:
        s.close()
    deadline = time.monotonic() + 10
    while _live_in_group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _live_in_group(pgid)
    assert not os.path.exists(profile)
    from xlgpt.engines.libreoffice import _pipe_files
    assert not _pipe_files(s._pipe, profile), "stale LibreOffice pipes left in /tmp"
