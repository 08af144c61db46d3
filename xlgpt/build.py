"""`xlgpt build`: load a model, lay out the workbook, write it, and say what the NumPy reference predicts."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import XlgptError
from .model import SMALL_MODEL, Model, load_model
from .reference import sample_token
from .stages import BuildOptions, build_book, forward, prompt_ids
from .xlsx.writer import IllegalText, write_book



@dataclass
class BuildResult:
    path: Path
    model: Model
    ids: list[int]
    next_token_id: int
    next_token: str
    seconds: float
    size: int


def default_out(model: Model) -> Path:
    return Path("out") / (re.sub(r"[^\w.-]+", "-", model.name).strip("-") + ".xlsx")


def as_written(a: np.ndarray) -> np.ndarray:
    """The float64 values an engine reads back from the 9-significant-digit decimals the writer stores."""
    a = np.asarray(a)
    if a.dtype == np.float64:
        return a
    flat = [float(s) for s in ("%.9g " * a.size % tuple(a.ravel().tolist())).split()]
    return np.array(flat, dtype=np.float64).reshape(a.shape)


def reference_forward(model: Model, ids: list[int], opts: BuildOptions) -> dict:
    """The values every formula computes: from the weights as written for small models (exact), float32 above."""
    small = model.config.n_params <= SMALL_MODEL
    if small:
        model = replace(model, params={k: as_written(model.params[k]) for k in model.params})
    return forward(model, opts, ids)


def build(model_spec: str | None, opts: BuildOptions, out: str | os.PathLike | None = None,
          progress=None, echo=print) -> BuildResult:
    t0 = time.perf_counter()
    model = load_model(model_spec)
    if opts.fit_context:
        need = len(model.tokenizer.encode(opts.prompt)) + opts.bos
        opts.context = max(opts.context, min(need, model.config.n_ctx))
    ids = prompt_ids(model, opts)
    path = Path(out) if out else default_out(model)
    if path.suffix.lower() != ".xlsx":
        raise XlgptError(f"--out must end in .xlsx: {path}")
    if not path.parent.exists():
        if out is None:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise XlgptError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise XlgptError(f"cannot write {path}: it is a folder")
    t = reference_forward(model, ids, opts)
    book = build_book(model, opts, t)
    try:
        write_book(book, path, progress=progress)
    except IllegalText as e:
        raise XlgptError(f"cannot store the prompt: {e}") from e
    except OSError as e:
        raise XlgptError(f"cannot write {path}: {e.strerror or e}") from e
    next_id = int(t["next_token_id"][0, 0])
    result = BuildResult(path, model, ids, next_id, model.tokenizer.token_text(next_id),
                         time.perf_counter() - t0, path.stat().st_size)
    if echo:
        echo(f"wrote {path} ({result.size / 1e6:.1f} MB, {model.name}, {model.config.n_params:,} parameters, "
             f"{len(ids)} of {opts.context} tokens) in {result.seconds:.1f} s")
        echo(f"NumPy reference predicts: {result.next_token!r} (id {next_id})")
        if opts.steer.on and opts.steer.vector is not None:
            s = opts.steer
            echo(f"steering block {s.layer} with coefficient {s.coef:g} ({s.coef_reason or 'as given'}): {s.source}")
        if opts.temperature > 0:
            if opts.seed is None:
                echo(f"the sheet samples at temperature {opts.temperature:g} (top-k {opts.sample_top_k or 'all'}) with "
                     "u = RAND(): a new draw on every recalculation")
            else:
                sid = sample_token(t["lm_head_logits"], opts.temperature, opts.sample_top_k, opts.seed)
                echo(f"NumPy reference samples: {model.tokenizer.token_text(sid)!r} (id {sid}) at temperature "
                     f"{opts.temperature:g}, top-k {opts.sample_top_k or 'all'}, u = {opts.seed:g}")
    return result
