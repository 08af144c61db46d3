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


def _poison(src, dst) -> int:
    """Replace every cached number by 0 and every cached text by "x": only a recalculation can get them back."""
    n = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data, k1 = re.subn(rb'(</f>)<v>[^<]*</v>', rb"\1<v>0</v>", data)
                data, k2 = re.subn(rb'(<c r="[A-Z]+[0-9]+"(?: s="[0-9]+")?)( t="str")?><v>[^<]*</v>', rb"\1><v>0</v>", data)
                n += k1 + k2
            zout.writestr(item, data)
    return n


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_recompute_instead_of_trusting_cached_values(built, tmp_path, engine):
    _, path = built
    bad = tmp_path / "poisoned.xlsx"
    assert _poison(path, bad) > 100_000
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
