"""`recalc`: what the sheet predicts, sampled and sees through the logit lens, as the JSON reports it."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ENGINES, build_tiny
from inside import reference, tmpdir
from xlgpt.recalc import recalc
from xlgpt.reference import sample_token

SPEC = "tiny:layers=2,heads=2,embd=16,merges=64"


@pytest.fixture(scope="module")
def hot_book():
    """A pinned draw far in the tail at a high temperature: the sampled token is not the argmax."""
    path = tmpdir() / "hot.xlsx"
    model, opts = build_tiny(path, SPEC, prompt="Mike is quick", context=12, live_tokenizer=False,
                             temperature=3.0, sample_top_k=0, seed=0.97)
    return path, model, opts


@pytest.mark.parametrize("engine", ENGINES)
def test_json_has_the_sampled_token_and_the_lens(hot_book, engine):
    path, model, opts = hot_book
    t = reference(model, opts)
    logits = t["lm_head_logits"].ravel()
    got = recalc(path, engine)
    tok = model.tokenizer
    want = sample_token(logits, 3.0, 0, 0.97)
    assert got["next_token_id"] == int(np.argmax(logits)) != want
    assert got["sampled_token_id"] == want and got["sampled_token"] == tok.decode([want])
    L = model.config.n_layer
    assert [e["layer"] for e in got["lens"]] == list(range(L + 1))
    top = [int(i) for i in t["lens_top_ids"][0]]  # the top token of the residual stream after each block
    assert [e["id"] for e in got["lens"]] == top
    assert [e["token"] for e in got["lens"]] == [tok.decode([i]) for i in top]
    assert np.allclose([e["prob"] for e in got["lens"]], t["lens_top_probs"][0], rtol=1e-12, atol=0)
    assert got["lens"][-1]["id"] == got["next_token_id"]


def test_json_at_temperature_zero_samples_the_argmax(tmp_path):
    path = tmp_path / "cold.xlsx"
    build_tiny(path, SPEC, prompt="abc", context=8, live_tokenizer=False)
    got = recalc(path, "ironcalc")
    assert got["sampled_token_id"] == got["next_token_id"] and got["sampled_token"] == got["next_token"]


def test_cli_prints_the_sampled_token_when_it_is_not_the_argmax(hot_book, capsys):
    from xlgpt.cli import main

    path, model, _ = hot_book
    assert main(["recalc", str(path)]) == 0
    got = recalc(path, "ironcalc")
    out = capsys.readouterr().out
    assert f"sampled {got['sampled_token']!r} (id {got['sampled_token_id']})" in out
