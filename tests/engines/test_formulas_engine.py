"""The formulas engine: formula patterns compiled once, dependency-order evaluation, the same values as
formulas' own ExcelModel and as IronCalc, recalculation of only what changed, and the size check."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.formula import ArrayFormula

from conftest import build_tiny
from xlgpt.engines import defined_names, open_workbook
from xlgpt.engines.base import CellError
from xlgpt.engines.formulas_book import read_book
from xlgpt.engines.formulas_engine import check_size, estimate_cells
from xlgpt.engines.formulas_graph import _pattern, shift_formula
from xlgpt.engines.refs import cell_name, parse_range
from xlgpt.errors import XlgptError

ROWS = 30


def make_patterns(path: Path) -> Path:
    """Many cells sharing few patterns: relative, absolute and mixed references, names, arrays, other sheets."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "data"
    other = wb.create_sheet("other sheet")
    ws["B1"] = 10
    other["A1"] = 0.5
    for r in range(1, ROWS + 1):
        ws.cell(row=r, column=1, value=r)  # A: 1..ROWS
        ws.cell(row=r, column=3, value=f"=A{r}*2+$B$1")  # C
        ws.cell(row=r, column=4, value=f"=A$1+$A{r}+C{r}*'other sheet'!$A$1")  # D: mixed
        ws.cell(row=r, column=5, value=f"=SUM(A$1:A{r})")  # E: a growing range
        ws.cell(row=r, column=6, value=f"=IF(A{r}>15,\"big\",\"A1\")")  # F: a reference-like string
        ws.cell(row=r, column=7, value=f"=INDEX(col_a,A{r})+INDEX(col_a,1,1)")  # G: a name
        ws.cell(row=r, column=8, value=f"=A{r}+A{r}")  # H: the same reference twice
        ws[f"J{r}"] = ArrayFormula(f"J{r}:L{r}", f"=A{r}*{{1,2,3}}+C{r}:E{r}")  # an array per row
        ws.cell(row=r, column=13, value=f"=MATCH(A{r},col_a,0)&\"\"")  # M: text result
        other.cell(row=r, column=2, value=f"=data!C{r}-data!A{r}")  # another sheet
    ws["O1"] = ArrayFormula("O1:P3", "=TRANSPOSE(A1:C2)")
    ws["O5"] = ArrayFormula("O5:Q6", "=A1:B1")  # a row repeated down, #N/A past its width
    ws["O8"] = "=SUM(J1:L30)"
    ws["O9"] = "=COUNTIF(F1:F30,\"big\")"
    ws["O10"] = "=1/0"
    ws["O11"] = "=IFERROR(O10,-1)"
    ws["O12"] = "=X99"  # an empty cell
    ws["O13"] = "=LEN(X99)"
    # IF with one condition: the branch not taken is skipped only where that cannot change the result
    ws["R1"] = ArrayFormula("R1:T1", "=IF(A1>0,-1,A1:C1+1)")  # skipped: the other branch fills 1x3 too
    ws["R2"] = ArrayFormula("R2:T2", "=IF(A1>0,-1,A1:B1)")  # not skipped: formulas gives -1, -1, #N/A
    ws["R3"] = ArrayFormula("R3:T3", "=IF(A1>0,A1:B1,A1:B1)")  # the taken branch: #N/A past B
    ws["R4"] = "=IF(A1>0,5,A1:C1)"  # one cell, the other branch a row
    ws["R5"] = "=IF(A1<0,5,A1:C1)"
    ws["R6"] = ArrayFormula("R6:T7", "=IF(A1>0,IF(A1:C1>1,1,0),0)")
    ws["R8"] = "=IF(A1>0,INDEX(A1:A5,2),MIN(A1:C1))"
    ws["O14"] = "=ROW()+COLUMN(B2)"
    ws["O15"] = "=ROW()+COLUMN(B2)"
    wb.defined_names["col_a"] = DefinedName("col_a", attr_text=f"data!$A$1:$A${ROWS}")
    wb.save(path)
    return path


@pytest.fixture(scope="module")
def patterns(tmp_path_factory) -> Path:
    return make_patterns(tmp_path_factory.mktemp("patterns") / "patterns.xlsx")


def _formula_cells(path):
    """{(sheet title, "A1")} of every formula cell, array cells included."""
    sheets, _ = read_book(str(path))
    out = []
    for s in sheets:
        for f in s.formulas:
            r1, c1, r2, c2 = f.ref or (f.row, f.col, f.row, f.col)
            out += [(s.title, cell_name(r, c)) for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)]
    return out


def _same(a, b, rel=1e-12) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= rel * max(1.0, abs(b))
    return type(a) is type(b) and a == b


def test_patterns_compile_once(patterns):
    with open_workbook(patterns, "formulas") as s:
        g = s._graph
        # 9 row patterns (C, D, E, F, G, H, J:L, M, other!B) instead of 9 x 30 compilations; D1 is one more
        # (A$1 and $A1 are the same cell there), O8 is E's SUM pattern, ROW() is compiled in every cell
        assert len(g.nodes) == 9 * ROWS + 17
        assert g.compiled == 9 + 1 + 17 - 1
        col = lambda c: [float(v) for v in s.read("data", f"{c}1:{c}{ROWS}")[:, 0]]
        a = np.arange(1, ROWS + 1, dtype=float)
        assert col("C") == list(a * 2 + 10)
        assert col("D") == list(1 + a + (a * 2 + 10) * 0.5)
        assert col("E") == list(np.cumsum(a))
        assert col("G") == list(a + 1)
        assert col("H") == list(2 * a)
        assert [str(v) for v in s.read("data", f"F1:F{ROWS}")[:, 0]] == ["A1" if r <= 15 else "big"
                                                                           for r in range(1, ROWS + 1)]
        want = np.stack([a * k for k in (1, 2, 3)], axis=1) + np.stack(
            [a * 2 + 10, 1 + a + (a * 2 + 10) * 0.5, np.cumsum(a)], axis=1)
        assert np.array_equal(s.read("data", f"J1:L{ROWS}").astype(float), want)
        assert [float(v) for v in s.read("other sheet", f"B1:B{ROWS}")[:, 0]] == list(a + 10)
        # the row of a ROW() formula is its own, though the text is the same
        assert [float(v) for v in s.read("data", "O14:O15")[:, 0]] == [16.0, 17.0]


def test_equals_formulas_excel_model(patterns):
    """Every formula cell has the value formulas' own ExcelModel gives."""
    import formulas

    sol = formulas.ExcelModel().loads(str(patterns)).finish().calculate()
    expected = {}
    for key, v in sol.items():
        if not isinstance(key, str) or "]" not in key or "!" not in key:
            continue
        sheet, ref = key[key.index("]") + 1:].rsplit("!", 1)
        value = getattr(v, "value", None)
        if value is None:
            continue
        sheet = sheet.strip("'").replace("''", "'")
        if ":" in ref:  # a range: its cells, where no cell node says otherwise
            r1, c1, r2, c2 = parse_range(ref)
            value = np.asarray(value, dtype=object).reshape(r2 - r1 + 1, c2 - c1 + 1)
            for i in range(r2 - r1 + 1):
                for j in range(c2 - c1 + 1):
                    expected.setdefault((sheet, cell_name(r1 + i, c1 + j)), value[i, j])
            continue
        expected[(sheet, ref)] = np.asarray(value).ravel()[0]
    with open_workbook(patterns, "formulas") as s:
        g = s._graph
        cells = _formula_cells(patterns)
        assert len(cells) > 9 * ROWS
        checked = 0
        for sheet, ref in cells:
            got = s.read(sheet, ref)[0, 0]
            if (sheet.upper(), ref) not in expected:
                continue
            want = s._convert(expected[(sheet.upper(), ref)])
            assert _same(got, want), (sheet, ref, got, want)
            checked += 1
        assert checked == len([c for c in cells if (c[0].upper(), c[1]) in expected]) > 8 * ROWS
        assert s.read("data", "O10")[0, 0] == CellError("#DIV/0!")
        assert s.read("data", "O11:O13")[:, 0].tolist() == [-1.0, 0.0, 0.0]
        assert s.read("data", "Q5:Q6")[:, 0].tolist() == [CellError("#N/A")] * 2
        assert s.read("data", "O5:P6").tolist() == [[1.0, 10.0]] * 2  # one row repeated down
        assert s.read("data", "R2:T3").tolist() == [[-1.0, -1.0, CellError("#N/A")], [1.0, 10.0, CellError("#N/A")]]
        assert s.read("data", "R1:T1").tolist() == [[-1.0] * 3]
        skipped = {g.nodes[i].compiled.skipped for i in range(len(g.nodes))}
        assert max(skipped) > 0


def test_recalc_runs_only_what_changed(patterns):
    with open_workbook(patterns, "formulas") as s:
        g = s._graph
        assert s.evaluated == len(g.nodes)
        s.set_cell("data", "A3", 100)
        s.recalc()
        # C3, D3, H3, J3:L3, F3, M3, other!B3, E3..E30 (running sums), the G that INDEX col_a (all of them),
        # the M that MATCH in col_a (all), the sums and counts over J/F
        assert 0 < s.evaluated < len(g.nodes)
        assert float(s.read("data", "C3")[0, 0]) == 210.0
        assert float(s.read("data", f"E{ROWS}")[0, 0]) == ROWS * (ROWS + 1) / 2 - 3 + 100
        assert float(s.read("other sheet", "B3")[0, 0]) == 110.0
        assert str(s.read("data", "F3")[0, 0]) == "big"
        s.recalc()
        assert s.evaluated == 0  # nothing changed, nothing volatile
        s.set_cell("data", "Z99", "lonely")  # no formula reads it
        s.recalc()
        assert s.evaluated == 0 and s.read("data", "Z99")[0, 0] == "lonely"
        s.set_cell("data", "C1", 1.5)  # typed over a formula: a value from now on, and what reads it follows
        s.recalc()
        assert s.read("data", "C1")[0, 0] == 1.5 and float(s.read("other sheet", "B1")[0, 0]) == 0.5
        s.set_cell("data", "A1", 7)
        s.recalc()
        assert s.read("data", "C1")[0, 0] == 1.5
        with pytest.raises(XlgptError, match="cannot change one cell of the array formula in data!J2:L2"):
            s.set_cell("data", "K2", 1.0)


def test_rand_is_recomputed(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"] = "=RAND()"
    ws["A2"] = "=A1*0+1"
    ws["A3"] = 5
    ws["A4"] = "=A3+1"
    path = tmp_path / "rand.xlsx"
    wb.save(path)
    with open_workbook(path, "formulas") as s:
        first = s.read("Sheet", "A1")[0, 0]
        s.recalc()
        assert s.evaluated == 2  # RAND() and what reads it
        assert 0 <= s.read("Sheet", "A1")[0, 0] < 1 and s.read("Sheet", "A1")[0, 0] != first


def test_shared_formulas(tmp_path):
    """A shared formula (Excel writes them; xlgpt does not) reads as its master moved to each cell."""
    src = tmp_path / "plain.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(1, 4):
        ws.cell(row=r, column=1, value=r)
    wb.save(src)
    dst = tmp_path / "shared.xlsx"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                cells = (b'<c r="B1"><f t="shared" ref="B1:B3" si="0">A1*10+$A$1</f></c>', b'<c r="B2"><f t="shared" si="0"/></c>',
                         b'<c r="B3"><f t="shared" si="0"/></c>')
                for r, c in enumerate(cells, 1):
                    data = data.replace(f'<c r="A{r}" t="n"><v>{r}</v></c>'.encode(),
                                        f'<c r="A{r}" t="n"><v>{r}</v></c>'.encode() + c)
                assert data.count(b't="shared"') == 3
            zout.writestr(info, data)
    with open_workbook(dst, "formulas") as s:
        assert s.read("Sheet", "B1:B3")[:, 0].tolist() == [11.0, 21.0, 31.0]


def test_references_and_patterns():
    assert shift_formula("A1+$B$2+B$3+'my sheet'!C3:D4&\"A1\"+h3_w+LOG10(4)", 1, 2) == \
        "C2+$B$2+D$3+'my sheet'!E4:F5&\"A1\"+h3_w+LOG10(4)"
    names = {"COL_A", "H3_W"}
    k1, refs1, used1, nums1 = _pattern("INDEX(col_a,A1,2)+A1*'my sheet'!B2:C3+h3_w-1", "DATA", names)
    k2, refs2, used2, nums2 = _pattern("INDEX(h3_w,A7,5)+A7*'my sheet'!B9:C10+col_a-1", "DATA", names)
    assert k1 == k2 and (nums1, nums2) == (["2"], ["5"])  # a literal after '-' stays in the key
    assert _pattern("SUM({1,2})+3", "S", names)[3] == ["3"]
    assert refs1 == [("DATA", 1, 1, 1, 1), ("DATA", 1, 1, 1, 1), ("MY SHEET", 2, 2, 3, 3)]
    assert used2 == ["H3_W", "COL_A"]
    assert _pattern("2*A1+3", "S", names)[0] != _pattern("2*A1+2", "S", names)[0]
    assert _pattern("A1+A2", "S", names)[0] != _pattern("A1+A1", "S", names)[0]  # equal references are kept apart
    assert _pattern("A1:A2", "S", names)[0] != _pattern("A1", "S", names)[0]


def test_number_literals_are_parameters(tmp_path):
    """Formulas that differ in their numbers share a compiled function unless formulas folded those numbers
    into a constant of its own."""
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(1, 21):
        ws.cell(row=r, column=1, value=r)
        ws.cell(row=r, column=2, value=f"=A{r}*{r + 1}+INDEX($A$1:$A$20,{r},1)")  # shared
        ws.cell(row=r, column=3, value=f"=A{r}+({r}*2)")  # ({r}*2) is folded when compiled: one each
        ws.cell(row=r, column=4, value=f"=IF({r}<10,-1,A{r}^0.5)")  # ({r}<10) folded too
    path = tmp_path / "literals.xlsx"
    wb.save(path)
    with open_workbook(path, "formulas") as s:
        a = np.arange(1, 21, dtype=float)
        assert s.read("Sheet", "B1:B20")[:, 0].tolist() == list(a * (a + 1) + a)
        assert s.read("Sheet", "C1:C20")[:, 0].tolist() == list(a + a * 2)
        assert s.read("Sheet", "D1:D20")[:, 0].tolist() == [-1.0] * 9 + list(a[9:] ** 0.5)
        per_column = {c: len({id(n.compiled) for n in s._graph.nodes if n.c1 == c}) for c in (2, 3, 4)}
        assert per_column == {2: 2, 3: 20, 4: 20}  # B1 has two equal literals (2 and INDEX's 1, 1)


def test_size_check_counts_array_cells(tmp_path, patterns):
    n = estimate_cells(str(patterns))
    sheets, _ = read_book(str(patterns))
    stored = sum(len(s.values) + len(s.formulas) for s in sheets)
    arrays = sum((f.ref[2] - f.ref[0] + 1) * (f.ref[3] - f.ref[1] + 1) - 1 for s in sheets for f in s.formulas if f.ref)
    assert n == stored + arrays and arrays == 2 * ROWS + 5 + 5 + 2 * 3 + 5
    with pytest.raises(XlgptError) as e:
        check_size(str(patterns), limit=100)
    msg = str(e.value)
    assert "\n" not in msg and " cells; use --engine ironcalc or libreoffice" in msg
    assert "every cell of an array formula counted" in msg


def test_live_tokenizer_equals_ironcalc(tmp_path):
    """A tiny model with the in-sheet tokenizer: every formula cell equals IronCalc's value, before and after a
    new prompt is typed in."""
    path = tmp_path / "live.xlsx"
    build_tiny(path, "tiny:layers=1,heads=1,embd=4,merges=64", prompt="Hi there", context=4, max_word_bytes=8,
               seed=0.3)  # a pinned draw: RAND() differs between engines
    cells = _formula_cells(path)
    by_sheet: dict[str, list[str]] = {}
    for sheet, ref in cells:
        by_sheet.setdefault(sheet, []).append(ref)
    with open_workbook(path, "formulas") as f, open_workbook(path, "ironcalc") as i:
        for prompt in (None, "a, b!"):
            if prompt is not None:
                sheet, ref = defined_names(path)["prompt"]
                for s in (f, i):
                    s.set_cell(sheet, ref, prompt)
                    s.recalc()
            bad = []
            for sheet, refs in by_sheet.items():
                for ref in refs:
                    a, b = f.read(sheet, ref)[0, 0], i.read(sheet, ref)[0, 0]
                    if not (_same(a, b, 1e-9) or (a in (None, "") and b in (None, ""))):
                        bad.append((sheet, ref, a, b))
            assert not bad, (prompt, len(bad), bad[:10])
