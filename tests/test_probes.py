"""The default model's workbook answers every sentence it was trained for, in every engine, as NumPy does; its
logit lens shows " Wednesday" late, and the talk's steering turns " phone" into " lightsaber".

The sheet tokenizes each prompt itself (typed into the prompt cell through the engine), so this also runs the
live tokenizer end to end on the default workbook."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import build_tiny, needs_libreoffice
from test_toy_tokenizer import TALK
from xlgpt.build import as_written
from xlgpt.model import load_model
from xlgpt.recalc import open_book, set_prompt
from xlgpt.reference import gpt2
from xlgpt.cli import main
from xlgpt.steering import activation_diff
from xlgpt.train import PROBES, STEER_COEF, STEER_LAYER, STEER_MINUS, STEER_PLUS, STEER_PROMPT
from xlgpt.verify import report, verify


@pytest.fixture(scope="module")
def toy():
    model = load_model("toy")
    model.params_as_written = {k: as_written(model.params[k]) for k in model.params}
    return model


def reference(model, prompt, context, steer=None):
    ids = model.tokenizer.encode(prompt)
    padded = ids + [model.tokenizer.eot_id] * (context - len(ids))
    return gpt2(padded, model.params_as_written, model.config, n_real=len(ids), steer=steer)


def reference_next(model, prompt, context):
    return int(reference(model, prompt, context)["next_token_id"][0, 0])


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


ENGINES = ["ironcalc", pytest.param("libreoffice", marks=needs_libreoffice)]


@pytest.mark.parametrize("engine", ENGINES)
def test_default_workbook_answers_every_probe(default_book, engine, toy):
    check_probes(default_book, engine, toy, 16, PROBES)


@pytest.mark.parametrize("engine", ENGINES)
def test_default_workbook_lens_and_the_talks_pieces(default_book, engine, toy):
    """The lens of the Tuesday prompt: " Wednesday" is the top token only after the middle blocks."""
    with open_book(default_book, engine) as wb:
        assert int(wb.numbers("next_token_id")[0, 0]) == toy.tokenizer.encode(" Wednesday")[0]
        ranks = [int(r) for r in wb.numbers("lens_target_rank").ravel()]
        middle = toy.config.n_layer // 2
        assert all(r > 1 for r in ranks[: middle + 1]) and ranks[-1] == 1, ranks
        for text, pieces in TALK.items():  # the sheet's own tokenizer gives GPT-2's pieces
            set_prompt(wb, text)
            ids = [int(v) for v in wb.numbers("tokens_ids").ravel()[: len(pieces)]]
            assert [toy.tokenizer.token_text(i) for i in ids] == pieces, text


@pytest.fixture(scope="module")
def steered_book(tmp_path_factory):
    """The README's command: xlgpt build --prompt "Mike pulls out his" --steer-diff " Jedi" " phone" ..."""
    path = tmp_path_factory.mktemp("toy") / "jedi.xlsx"
    assert main(["build", "--prompt", STEER_PROMPT, "--steer-diff", STEER_PLUS, STEER_MINUS, "--steer-layer",
                 str(STEER_LAYER), "--steer-coef", str(STEER_COEF), "--quiet", "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_jedi_steering_turns_phone_into_lightsaber(steered_book, engine, toy):
    vector = activation_diff(toy, STEER_PLUS, STEER_MINUS, STEER_LAYER)
    want = reference(toy, STEER_PROMPT, 16, steer=(STEER_LAYER, STEER_COEF * vector))
    lightsaber, phone = toy.tokenizer.encode(" lightsaber")[0], toy.tokenizer.encode(" phone")[0]
    with open_book(steered_book, engine) as wb:
        assert np.max(np.abs(wb.numbers("steer_vector").ravel() - vector)) < 1e-12
        logits = wb.numbers("lm_head_logits")
        assert np.max(np.abs(logits - want["lm_head_logits"])) < 1e-9 * max(1, np.max(np.abs(logits)))
        assert int(wb.numbers("next_token_id")[0, 0]) == int(want["next_token_id"][0, 0]) == lightsaber
        wb.set("steer_on", False)  # the switch in the steer tab: the plain model's answer
        wb.session.recalc()
        assert int(wb.numbers("next_token_id")[0, 0]) == phone == reference_next(toy, STEER_PROMPT, 16)


@pytest.mark.parametrize("prompt", [None, "Mike is quick. He moves"], ids=["default", "typed"])
def test_formulas_engine_verifies_the_default_workbook(tmp_path, toy, prompt):
    """The default workbook, in-sheet tokenizer included, every formula cell checked in the pure-Python engine;
    a prompt typed into the sheet is tokenized there and answered as NumPy does."""
    path = tmp_path / "toy.xlsx"
    build_tiny(path, "toy", prompt="If today is Tuesday, tomorrow is")
    result = verify(path, "formulas", prompt=prompt)
    text, ok = report(result)
    assert ok, text
    asked = prompt or "If today is Tuesday, tomorrow is"
    answer = dict(PROBES)[asked]
    assert result.next_token_id == toy.tokenizer.encode(answer)[0] == reference_next(toy, asked, 16)
