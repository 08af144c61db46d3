"""Full size (slow): GPT-2 small's and medium's shapes with seeded random weights, built, recalculated, compared.

    python -m pytest -m slow tests/test_fullsize.py        # small: ~5 min with IronCalc, ~10 with LibreOffice
    python -m pytest -m slow tests/test_fullsize.py -k medium   # GPT-2 medium (355M): IronCalc, ~10 GB

The NumPy reference uses the weights exactly as written (read back from the file), so the workbook
and NumPy compute with the same float64 numbers.
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from xlgpt.engines import open_workbook, read_name
from xlgpt.errors import XlgptError
from xlgpt.model import load_model
from xlgpt.reference import gpt2
from xlgpt.stages import BuildOptions, build_book, prompt_ids
from xlgpt.xlsx.reader import read_names
from xlgpt.xlsx.writer import write_book

pytestmark = pytest.mark.slow
CONTEXT = 16
PROMPT = "If today is Tuesday, tomorrow is"


def build_full(tmp_path_factory, spec: str):
    path = tmp_path_factory.mktemp("full") / "gpt2.xlsx"
    model = load_model(spec)
    opts = BuildOptions(prompt=PROMPT, context=CONTEXT, live_tokenizer=False)
    t = time.perf_counter()
    write_book(build_book(model, opts), path)
    seconds = time.perf_counter() - t
    params = {n: a.reshape(model.params.shapes[n]) for n, a in read_names(path, list(model.params)).items()}
    return path, model, prompt_ids(model, opts), params, seconds


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return build_full(tmp_path_factory, "random:gpt2")


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    return build_full(tmp_path_factory, "random:gpt2-medium")


def reference(model, params, ids) -> dict:
    pad = model.tokenizer.eot_id
    return gpt2(list(ids) + [pad] * (CONTEXT - len(ids)), params, model.config, n_real=len(ids))


def reference_next(model, params, ids) -> int:
    return int(reference(model, params, ids)["next_token_id"][0, 0])


def sheet_prediction(path, engine: str, *names: str) -> list[np.ndarray]:
    """Load and recalculate the workbook in `engine`; the values of the given defined names."""
    with open_workbook(path, engine) as s:
        return [read_name(s, path, name) for name in names]


def test_build_size_and_weights(full):
    path, model, _, params, seconds = full
    assert path.stat().st_size < 1.5e9
    for name in ("wte", "h11_mlp_c_proj_w", "ln_f_b"):
        assert np.array_equal(params[name].astype(np.float32), model.params[name])
    print(f"build {seconds:.1f} s, {path.stat().st_size / 1e6:.0f} MB")


def ironcalc_equals_reference(built):
    path, model, ids, params, _ = built
    got, logits = sheet_prediction(path, "ironcalc", "next_token_id", "lm_head_logits")
    got, logits = int(float(got[0, 0])), logits.astype(float).ravel()
    r = reference(model, params, ids)
    assert got == int(r["next_token_id"][0, 0])
    assert np.max(np.abs(logits - np.asarray(r["lm_head_logits"]).ravel())) < 1e-6


def test_ironcalc_equals_reference(full):
    ironcalc_equals_reference(full)


def test_verify_full_size(full):
    """Every formula cell of the full-size book, recalculated by IronCalc, equals its stated value."""
    from xlgpt.verify import report, verify

    text, ok = report(verify(full[0], "ironcalc"))
    assert ok, text


def test_generate_full_size(full):
    from xlgpt.generate import generate

    path, model, ids, params, _ = full
    got = generate(path, 2, echo=lambda s: None)
    expect = [reference_next(model, params, ids)]
    expect.append(reference_next(model, params, ids + expect))
    assert list(got) == expect
    print(f"{got.seconds_per_token:.2f} s per token")


def test_formulas_engine_refuses(full):
    path = full[0]
    with pytest.raises(XlgptError, match=r"formulas engine would need about .* min and .* GB"):
        open_workbook(path, "formulas")


@pytest.mark.skipif(not shutil.which("soffice"), reason="LibreOffice is not installed")
def test_libreoffice_equals_reference(full):
    path, model, ids, params, _ = full
    (got,) = sheet_prediction(path, "libreoffice", "next_token_id")
    assert int(float(got[0, 0])) == reference_next(model, params, ids)


def test_medium_ironcalc_equals_reference(medium):
    ironcalc_equals_reference(medium)


def test_medium_verifies(medium):
    from xlgpt.verify import report, verify

    text, ok = report(verify(medium[0], "ironcalc"))
    assert ok, text
