"""The workbook, recalculated by each engine, equals the NumPy reference at every stage."""
from __future__ import annotations

import re
import shutil
import zipfile

import numpy as np
import pytest

from conftest import ENGINES, build_tiny
from xlgpt.recalc import open_book
from xlgpt.engines.refs import col_number, parse_range
from xlgpt.verify import report, verify

# (layers, heads, embd, prompt): prompts of 1 token, a few, and exactly the context of 8
CASES = [
    (1, 1, 8, "a"),
    (2, 2, 16, "Hi there"),
    (3, 4, 32, "the cat is"),
    (2, 4, 8, "one two"),
]


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    out = {}
    for layers, heads, embd, prompt in CASES:
        path = tmp_path_factory.mktemp("spine") / f"tiny_{layers}_{heads}_{embd}.xlsx"
        spec = f"tiny:layers={layers},heads={heads},embd={embd},merges=64,ctx=16"
        model, _ = build_tiny(path, spec, prompt=prompt, context=8, live_tokenizer=False)
        out[(layers, heads, embd)] = (path, model, prompt)
    return out


def check(result):
    text, ok = report(result)
    assert ok, text
    tabs = {t.tab for t in result.tabs}
    for needed in ("embeddings", "block_0", "ln_f", "lm_head", "prediction", "logit_lens", "attention", "steer"):
        assert needed in tabs
    assert max(t.worst for t in result.tabs) < 1e-12


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("shape", [c[:3] for c in CASES], ids=lambda s: "L{}H{}C{}".format(*s))
def test_every_stage_equals_reference(books, engine, shape):
    path, model, prompt = books[shape]
    result = verify(path, engine)
    check(result)
    assert result.token_ids == model.tokenizer.encode(prompt)


@pytest.mark.parametrize("shape", [(1, 1, 8), (2, 4, 8)], ids=["L1H1C8", "L2H4C8"])
def test_formulas_engine(books, shape):
    path, _, _ = books[shape]
    check(verify(path, "formulas"))


def test_prompt_fills_the_context(tmp_path):
    path = tmp_path / "full.xlsx"
    model, opts = build_tiny(path, "tiny:layers=1,heads=2,embd=8,merges=64", prompt="Hi there!!!!", context=8,
                             live_tokenizer=False)
    n = len(model.tokenizer.encode(opts.prompt))
    assert n == 8
    result = verify(path, "ironcalc")
    check(result)
    assert len(result.token_ids) == 8


def test_rows_past_the_prompt_do_not_change_the_prediction(tmp_path):
    ids = {}
    for context in (4, 12):
        path = tmp_path / f"c{context}.xlsx"
        build_tiny(path, "tiny:layers=2,heads=2,embd=16,merges=64", prompt="abc", context=context, live_tokenizer=False)
        with open_book(path, "ironcalc") as wb:
            ids[context] = (int(wb.value("next_token_id")), wb.numbers("lm_head_logits"))
    assert ids[4][0] == ids[12][0]
    assert np.max(np.abs(ids[4][1] - ids[12][1])) < 1e-12


def test_editing_a_token_id_flows_through(books):
    path, model, prompt = books[(2, 2, 16)]
    with open_book(path, "ironcalc") as wb:
        before = wb.numbers("lm_head_logits").copy()
        sheet, ref = wb.names["tokens_input"]
        wb.session.set_cell(sheet, ref.split(":")[0], 7.0)
        wb.session.recalc()
        assert int(wb.numbers("tokens_ids")[0, 0]) == 7
        assert not np.allclose(before, wb.numbers("lm_head_logits"))


def test_verify_catches_a_wrong_formula(books, tmp_path):
    path, _, _ = books[(1, 1, 8)]
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data = data.replace(b"0.044715*", b"0.044716*")
            zout.writestr(item, data)
    text, ok = report(verify(bad, "ironcalc"))
    assert not ok and re.search(r"block_0 .* NO: \d+ cells differ, first block_0!", text), text


def test_formulas_are_formulas_not_values(books):
    """No stage tab holds a number computed in Python: every numeric stage cell is a formula, or a cell of an
    array formula (its cached value), or a label."""
    path, _, _ = books[(2, 2, 16)]
    stage_sheets = {"embeddings", "block_0", "block_1", "ln_f", "lm_head", "prediction"}
    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode()
        sheets = re.findall(r'<sheet name="([^"]+)"', wb)
        for i, name in enumerate(sheets, start=1):
            if name not in stage_sheets:
                continue
            xml = z.read(f"xl/worksheets/sheet{i}.xml").decode()
            arrays = [parse_range(ref) for ref in re.findall(r'<f t="array" ref="([A-Z0-9:]+)"', xml)]
            numbers = re.findall(r'<c r="([A-Z]+)(\d+)"[^>]*><v>([^<]*)</v></c>', xml)
            assert numbers, name
            for col, row, v in numbers:  # only labels remain: positions in column A, column indices in headers
                r, c = int(row), col_number(col)
                inside = any(r1 <= r <= r2 and c1 <= c <= c2 for r1, c1, r2, c2 in arrays)
                assert inside or col == "A" or float(v).is_integer(), (name, col, row, v)


def test_copy_recalculates_identically(books, tmp_path):
    path, _, _ = books[(3, 4, 32)]
    copy = tmp_path / "copy.xlsx"
    shutil.copy(path, copy)
    a = verify(path, "ironcalc")
    b = verify(copy, "ironcalc")
    assert a.next_token_id == b.next_token_id
