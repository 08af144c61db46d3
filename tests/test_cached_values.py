"""Every formula cell carries its value, so files show their answer before any recalculation; engines still
recompute everything (a wrong cached value never reaches verify)."""
from __future__ import annotations

import re
import zipfile

import numpy as np
import openpyxl
import pytest

from conftest import needs_libreoffice
from xlgpt import stages
from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.verify import report, verify
from xlgpt.xlsx.book import Between
from xlgpt.xlsx.writer import write_book

SPEC = "tiny:layers=2,heads=2,embd=8,merges=64"
ENGINES = ["ironcalc", pytest.param("libreoffice", marks=needs_libreoffice), "gnumeric"]


@pytest.fixture(scope="module")
def model():
    return load_model(SPEC)


@pytest.fixture(scope="module")
def built(model, tmp_path_factory):
    opts = BuildOptions(prompt="Mike is quick. He", context=16, temperature=0.8, sample_top_k=3)
    book = build_book(model, opts)
    path = tmp_path_factory.mktemp("cached") / "c.xlsx"
    write_book(book, path)
    return book, path


def test_a_reader_that_does_not_recalculate_sees_every_value(built):
    """openpyxl data_only (what pandas, calamine and previews do): each formula cell shows its expected value."""
    book, path = built
    wb = openpyxl.load_workbook(path, data_only=True)
    checked = 0
    for sheet, rng, want in book.formula_cells():
        ws = wb[sheet]
        for (i, j), w in np.ndenumerate(want):
            got = ws.cell(rng.r1 + i, rng.c1 + j).value
            if isinstance(w, Between):
                w = w.at
            if isinstance(w, str):
                assert (got or "") == w, (sheet, rng.r1 + i, rng.c1 + j)
            elif isinstance(w, (bool, np.bool_)):
                assert got is bool(w)
            else:
                assert got == pytest.approx(float(w), rel=1e-15, abs=1e-300), (sheet, rng.r1 + i, rng.c1 + j)
            checked += 1
    assert checked > 100_000
    nid = book.names["next_token"]
    assert wb[nid.sheet].cell(nid.r1, nid.c1).value  # the answer, readable without a spreadsheet


def _poison(book, src, dst) -> int:
    """Replace the cached value of every formula cell by 0: only a recalculation can get them back."""
    from xlgpt.xlsx.reader import sheet_parts
    from xlgpt.xlsx.writer import cached_values

    cells = {}
    for sheet, formulas in cached_values(book).items():
        where = cells[sheet] = set()
        for (r, c), vals in formulas.items():
            where.update((r + i, c + j) for i in range(vals.shape[0]) for j in range(vals.shape[1]))
    n = 0

    def zero(m, where):
        nonlocal n
        col, row = m.group(3).decode(), int(m.group(4))
        key = (row, sum((ord(ch) - 64) * 26 ** k for k, ch in enumerate(reversed(col))))
        if key not in where:
            return m.group(0)
        n += 1
        return m.group(1) + re.sub(rb' t="(str|b)"', b"", m.group(5)) + m.group(6) + b"<v>0</v></c>"

    cell = re.compile(rb'(<c r="(([A-Z]+)([0-9]+))")([^>]*>)((?:<f[^>]*>[^<]*</f>|<f[^>]*/>)?)<v>[^<]*</v></c>')
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        parts = {part: sheet for sheet, part in sheet_parts(zin).items()}
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename in parts:
                where = cells.get(parts[item.filename], set())
                data = cell.sub(lambda m: zero(m, where), data)
            zout.writestr(item, data)
    return n


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_recompute_instead_of_trusting_cached_values(built, tmp_path, engine):
    book, path = built
    bad = tmp_path / "poisoned.xlsx"
    assert _poison(book, path, bad) > 100_000
    text, ok = report(verify(bad, engine))
    assert ok, text


@pytest.mark.parametrize("engine", ENGINES)
def test_a_new_prompt_follows_the_reference_not_the_cache(built, engine):
    _, path = built
    result = verify(path, engine, prompt="He moves")
    text, ok = report(result)
    assert ok, text
    assert result.token_ids == load_model(SPEC).tokenizer.encode("He moves")


def test_no_cached_values(model, tmp_path):
    path = tmp_path / "bare.xlsx"
    write_book(build_book(model, BuildOptions(prompt="hi", context=4)), path, cached_values=False)
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"</f><v>" not in z.read(name), name
        assert b'fullCalcOnLoad="1"' in z.read("xl/workbook.xml")


def test_big_books_open_in_manual_mode_with_their_answer(model, tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "SMALL_MODEL", 1)  # this tiny model stands in for GPT-2 small
    book = build_book(model, BuildOptions(prompt="hi", context=4))
    assert book.manual_calc
    path = tmp_path / "big.xlsx"
    write_book(book, path)
    with zipfile.ZipFile(path) as z:
        assert b'calcMode="manual" fullCalcOnLoad="0"' in z.read("xl/workbook.xml")
    write_book(book, path, cached_values=False)  # without values Excel must calculate on load
    with zipfile.ZipFile(path) as z:
        assert b'fullCalcOnLoad="1"' in z.read("xl/workbook.xml")
