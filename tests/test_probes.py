"""The default model's workbook answers every sentence it was trained for, in every engine, as NumPy does.

The sheet tokenizes each prompt itself (typed into the prompt cell through the engine), so this also runs the
live tokenizer end to end on the default workbook."""
from __future__ import annotations

import pytest

from conftest import build_tiny, needs_libreoffice
from xlgpt.build import as_written
from xlgpt.model import load_model
from xlgpt.recalc import open_book, set_prompt
from xlgpt.reference import gpt2
from xlgpt.train import PROBES
from xlgpt.verify import report, verify


@pytest.fixture(scope="module")
def toy():
    model = load_model("toy")
    model.params_as_written = {k: as_written(model.params[k]) for k in model.params}
    return model


def reference_next(model, prompt, context):
    ids = model.tokenizer.encode(prompt)
    padded = ids + [model.tokenizer.eot_id] * (context - len(ids))
    return int(gpt2(padded, model.params_as_written, model.config, n_real=len(ids))["next_token_id"][0, 0])


def check_probes(path, engine, toy, context, probes):
    with open_book(path, engine) as wb:
        for prompt, answer in probes:
            set_prompt(wb, prompt)
            assert wb.value("status") in (None, ""), (prompt, wb.value("status"))
            got = int(wb.numbers("next_token_id")[0, 0])
            want = toy.tokenizer.encode(answer)[0]
            assert got == want == reference_next(toy, prompt, context), (prompt, answer, got)
            assert [int(v) for v in wb.numbers("tokens_ids").ravel()[: len(toy.tokenizer.encode(prompt))]] == \
                toy.tokenizer.encode(prompt)


@pytest.fixture(scope="module")
def default_book(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.xlsx"
    build_tiny(path, "toy", prompt=PROBES[0][0])  # the defaults of `xlgpt build`
    return path


@pytest.mark.parametrize("engine", ["ironcalc", pytest.param("libreoffice", marks=needs_libreoffice)])
def test_default_workbook_answers_every_probe(default_book, engine, toy):
    check_probes(default_book, engine, toy, 16, PROBES)


def test_formulas_engine_answers_a_probe(tmp_path, toy):
    """`formulas` pays ~1 ms per cell (the default workbook's tokenizer alone has ~300k), so here Python
    tokenizes (token ids as input cells): the same model and stages, one probe, every stage verified."""
    prompt, answer = PROBES[0]
    path = tmp_path / "toy_ids.xlsx"
    build_tiny(path, "toy", prompt=prompt, live_tokenizer=False)
    result = verify(path, "formulas")
    text, ok = report(result)
    assert ok, text
    assert result.next_token_id == toy.tokenizer.encode(answer)[0] == reference_next(toy, prompt, 16)
