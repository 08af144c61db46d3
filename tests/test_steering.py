"""Steering the residual stream: vectors from a file, an activation difference or an SAE feature, switchable in cells."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import ENGINES
from inside import CONTEXT, PROMPT, SPEC, reference, rel_err
from xlgpt.cli import main
from xlgpt.model import load_model
from xlgpt.recalc import open_book
from xlgpt.reference import gpt2
from xlgpt.stages import BuildOptions, build_book
from xlgpt.steering import steering_from_args
from xlgpt.verify import report, verify

PLUS, MINUS = "love", "hate"


@pytest.fixture(scope="module")
def model():
    return load_model(SPEC)


def options(**kw) -> BuildOptions:
    return BuildOptions(prompt=PROMPT, context=CONTEXT, live_tokenizer=False, **kw)


def build(path, *flags, spec=SPEC):
    code = main(["build", "--model", spec, "--prompt", PROMPT, "--context", str(CONTEXT), "--python-tokenizer",
                 "--quiet", "--out", str(path), *flags])
    assert code == 0
    return path


def resid(model, text, layer):
    """resid_pre entering `layer`, written out independently of xlgpt.steering."""
    return gpt2(model.tokenizer.encode(text), model.params, model.config)[f"block_{layer}_resid_pre"]


def one_line_error(code, err, *fragments):
    err = err.strip()
    assert code == 2 and err.startswith("xlgpt: error:") and "\n" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


@pytest.fixture(scope="module")
def books(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("steer")
    vec = np.random.default_rng(7).normal(size=model.config.n_embd)
    np.save(d / "v.npy", vec)
    return {
        "plain": build(d / "plain.xlsx"),
        "diff": build(d / "diff.xlsx", "--steer-diff", PLUS, MINUS, "--steer-layer", "1", "--steer-coef", "4"),
        "vector": build(d / "vector.xlsx", "--steer-vector", str(d / "v.npy"), "--steer-layer", "0",
                        "--steer-coef", "2.5", "--steer-positions", "3"),
        "vec": vec, "dir": d,
    }


def test_steer_diff_equals_reference(books, model):
    diff = resid(model, PLUS, 1)[-1] - resid(model, MINUS, 1)[-1]
    with open_book(books["diff"], "ironcalc") as wb:
        assert wb.value("steer_on") is True
        assert int(wb.numbers("steer_layer")[0, 0]) == 1 and wb.numbers("steer_coef")[0, 0] == 4
        assert rel_err(wb.numbers("steer_vector").ravel(), diff) < 1e-15
        want = reference(model, options(), steer=(1, 4.0, diff, 0))
        assert rel_err(wb.numbers("lm_head_logits"), want["lm_head_logits"]) < 1e-12
        assert int(wb.numbers("next_token_id")[0, 0]) == int(np.argmax(want["lm_head_logits"]))
    text, ok = report(verify(books["diff"], "ironcalc"))  # every stage, the lens included, with the steering
    assert ok, text


def test_steer_diff_mean_over_positions(tmp_path, model):
    path = build(tmp_path / "m.xlsx", "--steer-diff", PLUS, MINUS, "--steer-layer", "0", "--steer-mean")
    diff = resid(model, PLUS, 0).mean(axis=0) - resid(model, MINUS, 0).mean(axis=0)
    with open_book(path, "ironcalc") as wb:
        assert rel_err(wb.numbers("steer_vector").ravel(), diff) < 1e-15
        assert wb.numbers("steer_coef")[0, 0] == 1  # the default for an activation difference
        want = reference(model, options(), steer=(0, 1.0, diff, 0))
        assert rel_err(wb.numbers("lm_head_logits"), want["lm_head_logits"]) < 1e-12


def test_steer_vector_file_with_positions(books, model):
    with open_book(books["vector"], "ironcalc") as wb:
        assert np.array_equal(wb.numbers("steer_vector").ravel(), books["vec"])
        mask = wb.numbers("steer_mask").ravel()
        assert list(mask) == [1] * 3 + [0] * (CONTEXT - 3)
        want = reference(model, options(), steer=(0, 2.5, books["vec"], 3))
        assert rel_err(wb.numbers("lm_head_logits"), want["lm_head_logits"]) < 1e-12
        assert rel_err(wb.numbers("block_0_resid_pre"), want["block_0_resid_pre"]) < 1e-12
        unsteered = reference(model, options())
        assert rel_err(wb.numbers("block_0_resid_pre")[3:], unsteered["block_0_resid_pre"][3:]) == 0


def test_coefficient_zero_or_switch_off_is_exactly_unsteered(books, tmp_path):
    names = ["lm_head_logits", "block_0_resid_pre", "block_1_resid_pre", "lens_logits"]
    with open_book(books["plain"], "ironcalc") as wb:
        assert wb.value("steer_on") is False
        plain = {n: wb.numbers(n) for n in names}
    zero = build(tmp_path / "zero.xlsx", "--steer-vector", str(books["dir"] / "v.npy"), "--steer-layer", "0",
                 "--steer-coef", "0")
    for path, cell, value in [(books["diff"], "steer_coef", 0.0), (books["diff"], "steer_on", False),
                              (books["vector"], "steer_coef", 0.0), (zero, None, None)]:
        with open_book(path, "ironcalc") as wb:
            if cell:
                before = wb.numbers("lm_head_logits")
                assert not np.array_equal(before, plain["lm_head_logits"])
                wb.set(cell, value)
                wb.session.recalc()
            for n in names:
                assert np.array_equal(wb.numbers(n), plain[n]), (path.name, cell, n)


def coefficient_that_flips(model, vector, layer):
    base = int(np.argmax(reference(model, options())["lm_head_logits"]))
    for c in (2, 4, 8, 16, -4, -8, 32, -16, 64):
        t = reference(model, options(), steer=(layer, float(c), vector, 0))
        if int(np.argmax(t["lm_head_logits"])) != base:
            return float(c), t, base
    pytest.fail("no coefficient changes the prediction")


@pytest.mark.parametrize("engine", ENGINES)
def test_setting_the_coefficient_cell_changes_the_prediction(books, model, engine):
    diff = resid(model, PLUS, 1)[-1] - resid(model, MINUS, 1)[-1]
    coef, want, base = coefficient_that_flips(model, diff, 1)
    with open_book(books["diff"], engine) as wb:
        wb.set("steer_coef", coef)
        wb.session.recalc()
        got = int(wb.numbers("next_token_id")[0, 0])
        assert got == int(np.argmax(want["lm_head_logits"])) != base
        assert rel_err(wb.numbers("lm_head_logits"), want["lm_head_logits"]) < 1e-12
        wb.set("steer_layer", 0)  # the same vector entering block 0 instead
        wb.session.recalc()
        want0 = reference(model, options(), steer=(0, coef, diff, 0))
        assert rel_err(wb.numbers("lm_head_logits"), want0["lm_head_logits"]) < 1e-12


def test_steer_tab_states_the_source_and_coefficient(model):
    args = argparse.Namespace(steer_vector=None, steer_diff=[PLUS, MINUS], steer_sae=None, steer_layer=1,
                              steer_coef=None, steer_positions=0, steer_mean=False, bos=False, prompt=PROMPT)
    steer = steering_from_args(args, SPEC)
    assert steer.on and steer.coef == 1.0 and steer.layer == 1
    book = build_book(model, options(steer=steer))
    texts = [v for v, _ in book.sheet("steer").cells.values() if isinstance(v, str)]
    assert any("resid_pre('love') - resid_pre('hate')" in t and "last position" in t for t in texts)
    assert any(t.startswith("default 1") for t in texts)


# ---- sparse-autoencoder features ------------------------------------------------------------------------
def make_sae(root, layer, d_in, d_sae=40, seed=0):
    """A small SAE in the SAELens layout: ROOT/blocks.L.hook_resid_pre/{cfg.json, sae_weights.safetensors}."""
    folder = root / f"blocks.{layer}.hook_resid_pre"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    w_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    save_file({"W_enc": np.ascontiguousarray(w_dec.T), "b_enc": np.zeros(d_sae, np.float32), "W_dec": w_dec,
               "b_dec": np.zeros(d_in, np.float32)}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"model_name": "tiny", "hook_point": f"blocks.{layer}.hook_resid_pre",
                                                 "hook_point_layer": layer, "d_in": d_in, "d_sae": d_sae}))
    return w_dec


def test_sae_feature_from_a_local_folder(tmp_path, model):
    w_dec = make_sae(tmp_path / "sae", 1, model.config.n_embd)
    path = build(tmp_path / "sae.xlsx", "--steer-sae", f"{tmp_path / 'sae'}:1:7")
    row = w_dec[7].astype(np.float64)
    x = resid(model, PROMPT, 1)[-1]
    coef = float(f"{np.linalg.norm(x) / np.linalg.norm(row):.3g}")  # the documented default
    with open_book(path, "ironcalc") as wb:
        assert np.array_equal(wb.numbers("steer_vector").ravel(), row)
        assert int(wb.numbers("steer_layer")[0, 0]) == 1 and wb.value("steer_on") is True
        assert wb.numbers("steer_coef")[0, 0] == coef
        want = reference(model, options(), steer=(1, coef, row, 0))
        assert rel_err(wb.numbers("lm_head_logits"), want["lm_head_logits"]) < 1e-12
    path = build(tmp_path / "sae2.xlsx", "--steer-sae", f"{tmp_path / 'sae'}:1:3", "--steer-coef", "5",
                 "--steer-layer", "0")
    with open_book(path, "ironcalc") as wb:
        assert int(wb.numbers("steer_layer")[0, 0]) == 0 and wb.numbers("steer_coef")[0, 0] == 5
        want = reference(model, options(), steer=(0, 5.0, w_dec[3].astype(np.float64), 0))
        assert rel_err(wb.numbers("lm_head_logits"), want["lm_head_logits"]) < 1e-12


def test_sae_errors(tmp_path, model, capsys):
    make_sae(tmp_path / "ok", 1, model.config.n_embd)
    make_sae(tmp_path / "wide", 1, 24)
    out = str(tmp_path / "x.xlsx")
    cases = [
        (f"{tmp_path / 'ok'}:1:40", "out of range"),
        (f"{tmp_path / 'ok'}:0:1", "no folder blocks.0.hook_resid_pre"),
        (f"{tmp_path / 'wide'}:1:1", "d_in 24"),
        (f"{tmp_path / 'ok'}:7", "RELEASE:LAYER:FEATURE"),
        ("no-such-release:1:1", "unknown release"),
        (f"{tmp_path / 'ok'}:5:1", "outside this model's blocks"),
    ]
    for spec, fragment in cases:
        code = main(["build", "--model", SPEC, "--steer-sae", spec, "--out", out, "--quiet"])
        one_line_error(code, capsys.readouterr().err, fragment)
    assert not os.path.exists(out)


def test_sae_release_offline_is_one_clear_line(tmp_path, monkeypatch, capsys):
    """gpt2-small-res-jb is downloaded from the hub; offline that is one line and exit 2, quickly."""
    spec = "tiny:layers=3,heads=1,embd=768,merges=8"  # GPT-2 small's width, so the SAE would fit
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["build", "--model", spec, "--steer-sae", "gpt2-small-res-jb:2:7650", "--out", str(tmp_path / "x.xlsx")])
    one_line_error(code, capsys.readouterr().err, "gpt2-small-res-jb", "HF_HUB_OFFLINE", "local folder")
    # without HF_HUB_OFFLINE: an unreachable hub is found out before huggingface_hub's retries
    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = main(["build", "--model", spec, "--steer-sae", "gpt2-small-res-jb:2:7650", "--out", str(tmp_path / "x.xlsx")])
    one_line_error(code, capsys.readouterr().err, "unreachable", "local folder")
    code = main(["build", "--model", SPEC, "--steer-sae", "gpt2-small-res-jb:1:7650", "--out", str(tmp_path / "x.xlsx")])
    one_line_error(code, capsys.readouterr().err, "768", "n_embd is 16")


def test_vector_file_errors(tmp_path, model, capsys):
    C = model.config.n_embd
    np.save(tmp_path / "shape.npy", np.zeros((2, C)))
    np.save(tmp_path / "short.npy", np.zeros(C - 1))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "nan.npy", np.full(C, np.nan))
    np.savez(tmp_path / "two.npz", a=np.zeros(C))
    (tmp_path / "text.npy").write_text("not numpy")
    np.save(tmp_path / "ok.npy", np.zeros(C))
    out = str(tmp_path / "x.xlsx")
    cases = [
        (["--steer-vector", str(tmp_path / "shape.npy"), "--steer-layer", "0"], "shape (2, 16)"),
        (["--steer-vector", str(tmp_path / "short.npy"), "--steer-layer", "0"], "n_embd = 16"),
        (["--steer-vector", str(tmp_path / "obj.npy"), "--steer-layer", "0"], "unpickling"),
        (["--steer-vector", str(tmp_path / "nan.npy"), "--steer-layer", "0"], "NaN"),
        (["--steer-vector", str(tmp_path / "two.npz"), "--steer-layer", "0"], ".npz"),
        (["--steer-vector", str(tmp_path / "text.npy"), "--steer-layer", "0"], "not a .npy"),
        (["--steer-vector", str(tmp_path / "missing.npy"), "--steer-layer", "0"], "no such file"),
        (["--steer-vector", str(tmp_path / "ok.npy")], "needs --steer-layer"),
        (["--steer-vector", str(tmp_path / "ok.npy"), "--steer-layer", "2"], "outside this model's blocks 0..1"),
        (["--steer-diff", PLUS, MINUS], "needs --steer-layer"),
        (["--steer-vector", str(tmp_path / "ok.npy"), "--steer-layer", "0", "--steer-positions", "-1"], "--steer-positions"),
    ]
    for flags, fragment in cases:
        code = main(["build", "--model", SPEC, "--prompt", PROMPT, "--context", str(CONTEXT), *flags, "--out", out,
                     "--quiet"])
        one_line_error(code, capsys.readouterr().err, fragment)
    assert not os.path.exists(out)
