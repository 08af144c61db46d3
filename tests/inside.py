"""Helpers shared by the look-inside tests (logit lens, sampling, steering, chart).

One small workbook is built once per pytest process and one `formulas` session is opened on it once
(loading is the slow part of that engine), so the lens and sampling tests share the cost.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np

from conftest import build_tiny
from xlgpt.build import as_written
from xlgpt.recalc import open_book
from xlgpt.reference import gpt2
from xlgpt.stages import BuildOptions, prompt_ids

SPEC = "tiny:layers=2,heads=2,embd=16,merges=64"
FORMULAS_SPEC = "tiny:layers=2,heads=1,embd=4,merges=1"
PROMPT = "Mike is quick"
CONTEXT = 12
SAMPLE = dict(temperature=0.7, sample_top_k=5, seed=0.4)  # the shared book samples with a pinned draw

_cache: dict = {}


def tmpdir() -> Path:
    if "dir" not in _cache:
        d = Path(tempfile.mkdtemp(prefix="xlgpt-inside-"))
        atexit.register(shutil.rmtree, d, True)
        _cache["dir"] = d
    return _cache["dir"]


def shared_book():
    """(path, model, options) of a 2-layer tiny model, Python tokenizer, pinned sampling draw."""
    if "book" not in _cache:
        path = tmpdir() / "inside.xlsx"
        model, opts = build_tiny(path, SPEC, prompt=PROMPT, context=CONTEXT, live_tokenizer=False, **SAMPLE)
        _cache["book"] = (path, model, opts)
    return _cache["book"]


def engine_book(engine: str):
    """The shared book opened once per engine (IronCalc, LibreOffice, Gnumeric). Tests share the session: each sets
    only its own input cells (lens_target; temperature, sample_top_k, sample_u) and reads nothing the others set."""
    key = f"engine:{engine}"
    if key not in _cache:
        path, _, _ = shared_book()
        wb = open_book(path, engine)
        atexit.register(wb.session.close)
        _cache[key] = wb
    return _cache[key]


def formulas_book():
    """A smaller book (the formulas engine pays ~1 ms per cell to load) opened once in the formulas engine:
    (workbook, path, model, options). Read only: do not set cells on it."""
    if "formulas" not in _cache:
        path = tmpdir() / "inside_formulas.xlsx"
        model, opts = build_tiny(path, FORMULAS_SPEC, prompt="ab", context=4, live_tokenizer=False, **SAMPLE)
        wb = open_book(path, "formulas")
        atexit.register(wb.session.close)
        _cache["formulas"] = (wb, path, model, opts)
    return _cache["formulas"]


def reference(model, opts: BuildOptions, steer=None, **gpt2_kw) -> dict:
    """The NumPy reference for a build: weights as written, the prompt padded to the context, and the build's
    steering (or `steer` = (layer, coef, vector, positions) to ask for another)."""
    ids = prompt_ids(model, opts)
    params = {k: as_written(model.params[k]) for k in model.params}
    padded = list(ids) + [model.tokenizer.eot_id] * (opts.context - len(ids))
    s = opts.steer
    if steer is None and s.on and s.vector is not None:
        steer = (s.layer, s.coef, s.vector, s.positions)
    add = None
    if steer is not None:
        layer, coef, vector, positions = steer
        mask = (np.arange(opts.context) < positions if positions else np.ones(opts.context, bool))[:, None]
        add = (layer, coef * np.asarray(vector, dtype=np.float64)[None, :] * mask)
    return gpt2(padded, params, model.config, n_real=len(ids), steer=add, **gpt2_kw)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64).reshape(np.shape(a))
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))
