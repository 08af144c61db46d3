"""`xlgpt build`: load a model, lay out the workbook, write it, and say what the NumPy reference predicts.

Everything that can fail comes before the output is touched: the options and the prompt, the size of the
workbook (estimated from the config, before anything is allocated), the NumPy reference, the layout. Writing
the file is the last step, to a temporary file renamed over the output only when complete (xlsx/writer.py).
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import XlgptError
from .model import SMALL_MODEL, GPT2Config, Model, load_model
from .contract import T
from .stages import BuildOptions, build_book, forward, prompt_ids
from .stages.options import check_build, check_text
from .xlsx.book import MAX_COLS, MAX_ROWS
from .xlsx.numblock import written_values
from .xlsx.writer import IllegalText, write_book

FILE_BYTES_PER_WEIGHT = 9.7  # measured: GPT-2 small's 124.4M weights make a 1.2 GB file (README)
WRITE_CELLS_PER_S = 5e6  # measured: the writer's weight cells per second (bench/RESULTS.md)
BUILD_BYTES = 400 << 20  # the layout, the tokenizer tabs and the interpreter
TENSOR_COPIES = 4  # a tensor in flight: float32 as loaded, its float64 reference copy, the coder's buffers
DEFAULT_CONTEXT = 16
RECALC_BYTES_PER_WEIGHT = 33  # measured: IronCalc loading and recalculating (verify) GPT-2 small 4.6 GB, medium 11.4 GB


@dataclass
class BuildResult:
    path: Path
    model: Model
    ids: list[int]
    next_token_id: int
    next_token: str
    seconds: float
    size: int


@dataclass
class Estimate:
    """What a workbook of this config will take, from arithmetic on the config alone."""

    weights: int  # weight cells
    columns: int  # widest tab (the MLP weights and activations: 4 x n_embd, from column C)
    rows: int  # longest tab (wte: one row per token)
    file_bytes: int
    memory_bytes: int
    seconds: float
    recalc_bytes: int = 0  # what recalculating it takes (IronCalc, the leanest engine here)

    def text(self) -> str:
        return (f"about {self.weights:,} weight cells, {self.file_bytes / 1e9:,.1f} GB on disk, "
                f"{self.memory_bytes / 1e9:,.1f} GB of memory, {self.seconds / 60:,.0f} min")


def estimate(cfg: GPT2Config) -> Estimate:
    weights = cfg.n_params
    kept = weights * 4 if weights < SMALL_MODEL else 0  # small models are held whole (and as float64)
    reference = weights * 8 if weights <= SMALL_MODEL else 0
    return Estimate(weights, columns=2 + 4 * cfg.n_embd, rows=cfg.vocab_size + 6,
                    file_bytes=int(weights * FILE_BYTES_PER_WEIGHT),
                    memory_bytes=BUILD_BYTES + kept + reference + TENSOR_COPIES * 8 * cfg.largest_tensor,
                    seconds=weights / WRITE_CELLS_PER_S, recalc_bytes=weights * RECALC_BYTES_PER_WEIGHT)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def check_fits(cfg: GPT2Config, folder: Path) -> Estimate:
    """Refuse a workbook that Excel's grid, this machine's memory or the output's disk cannot hold."""
    est = estimate(cfg)
    if est.columns > MAX_COLS:
        raise XlgptError(f"n_embd {cfg.n_embd} needs {est.columns:,} columns (the MLP's 4 x n_embd) but Excel's grid "
                         f"has {MAX_COLS:,}: at most n_embd {(MAX_COLS - 2) // 4:,} ({est.text()})")
    if est.rows > MAX_ROWS:
        raise XlgptError(f"a vocabulary of {cfg.vocab_size:,} tokens needs {est.rows:,} rows on the wte tab but "
                         f"Excel's grid has {MAX_ROWS:,}")
    mem = _memory_bytes()
    if mem is not None and est.memory_bytes > mem:
        raise XlgptError(f"this workbook needs {est.text()}; this machine has {mem / 1e9:,.1f} GB of memory")
    if mem is not None and est.recalc_bytes > mem:  # GPT-2 large and XL here: refused at once, not after the build
        raise XlgptError(f"this workbook ({est.text()}) would need about {est.recalc_bytes / 1e9:,.0f} GB of memory "
                         f"to recalculate in IronCalc, the leanest engine here; this machine has {mem / 1e9:,.1f} GB")
    probe = folder if folder.is_dir() else Path(".")
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = None
    if free is not None and est.file_bytes > free:
        raise XlgptError(f"this workbook needs {est.text()}; {probe} has {free / 1e9:,.1f} GB free")
    return est


def default_out(model: Model) -> Path:
    return Path("out") / (re.sub(r"[^\w.-]+", "-", model.name).strip("-") + ".xlsx")


def as_written(a: np.ndarray) -> np.ndarray:
    """The float64 values an engine reads back from what the writer stores (float64 is stored exactly)."""
    a = np.asarray(a)
    return a if a.dtype == np.float64 else written_values(a)


def reference_forward(model: Model, ids: list[int], opts: BuildOptions) -> dict:
    """The values every formula computes: from the weights as written for small models (exact), float32 above."""
    if model.config.n_params <= SMALL_MODEL:
        model = replace(model, params={k: as_written(model.params[k]) for k in model.params})
    with np.errstate(all="ignore"):  # an overflow is reported below, by name
        t = forward(model, opts, ids)
    for name, a in t.items():
        a = np.asarray(a)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise XlgptError(f"the forward pass overflows ({name} holds infinity or NaN): the sheet would show errors; "
                             "check the weights, layer_norm_epsilon and the steering coefficient")
    return t


def output_path(out: str | os.PathLike | None, model: Model | None = None) -> Path:
    """The file to write (`out`, else the model's default): checked, not created. A symlink is written
    through (its target is replaced)."""
    if out is not None and not str(out).strip():
        raise XlgptError("--out is empty: give a file name ending in .xlsx")
    path = Path(out) if out is not None else default_out(model)
    if path.suffix.lower() != ".xlsx":
        raise XlgptError(f"--out must end in .xlsx: {path}")
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise XlgptError(f"cannot write {path}: it is a folder")
    if target.exists() and not target.is_file():
        raise XlgptError(f"cannot write {path}: it is not a regular file")
    if not target.parent.is_dir() and out is not None:
        raise XlgptError(f"cannot write {path}: folder {target.parent} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise XlgptError(f"cannot write {path}: the file is read-only")
    if target.parent.is_dir() and not os.access(target.parent, os.W_OK | os.X_OK):
        raise XlgptError(f"cannot write {path}: folder {target.parent} is not writable")
    return path


def fit_context(model: Model, opts: BuildOptions) -> None:
    """A context not chosen: the default, grown to fit the prompt, and never past the model's n_ctx."""
    need = len(model.tokenizer.encode(opts.prompt)) + opts.bos
    opts.context = min(max(DEFAULT_CONTEXT, need), model.config.n_ctx)


def build(model_spec: str | None, opts: BuildOptions, out: str | os.PathLike | None = None,
          progress=None, echo=print) -> BuildResult:
    t0 = time.perf_counter()
    check_text(opts.prompt)
    if out is not None:
        output_path(out)  # before the (maybe long) load
    model = load_model(model_spec)
    path = output_path(out, model)
    check_fits(model.config, Path(os.path.realpath(path)).parent)
    if opts.fit_context:
        fit_context(model, opts)
    check_build(opts, model.config.n_ctx, model.config.n_embd, model.tokenizer.pretokenize(opts.prompt))
    ids = prompt_ids(model, opts)
    t = reference_forward(model, ids, opts)
    try:
        book = build_book(model, opts, t)
    except ValueError as e:  # the grid check of xlsx/book.py, for a tab the estimate above does not cover
        if "outside Excel's grid" not in str(e):
            raise
        raise XlgptError(f"this workbook does not fit Excel's grid ({MAX_ROWS:,} rows, {MAX_COLS:,} columns): {e}; "
                         "use a smaller --context, --max-chars or --max-word-bytes") from None
    if out is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_book(book, path, progress=progress, cached_values=opts.cached_values)
    except IllegalText as e:
        raise XlgptError(f"cannot store a text in the workbook: {e}") from e
    except OSError as e:
        raise XlgptError(f"cannot write {path}: {e.strerror or e}") from e
    next_id = int(t[T.next_token_id()][0, 0])
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
                sid = int(t[T.sampled_token_id()][0, 0])
                echo(f"NumPy reference samples: {model.tokenizer.token_text(sid)!r} (id {sid}) at temperature "
                     f"{opts.temperature:g}, top-k {opts.sample_top_k or 'all'}, u = {opts.seed:g}")
    return result
