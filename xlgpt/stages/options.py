"""What a build is asked to do (the CLI's flags, as data)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Steering:
    """A vector added to the residual stream entering block `layer` (issue: look inside and operate)."""

    layer: int = 0
    coef: float = 0.0
    vector: np.ndarray | None = None  # [n_embd]
    on: bool = False
    positions: int = 0  # 0 = every position, else only the first P
    source: str = "none"
    coef_reason: str = ""  # why this coefficient (shown on the steer tab)


@dataclass
class BuildOptions:
    prompt: str = "If today is Tuesday, tomorrow is"
    context: int = 16
    fit_context: bool = False  # context not chosen: grow it to fit the prompt (up to the model's n_ctx)
    live_tokenizer: bool = True  # tokenize in the sheet; False writes Python's token ids as inputs
    max_chars: int = 0  # 0: 8 x context
    max_word_bytes: int = 128
    bos: bool = False
    top_k: int = 10
    temperature: float = 0.0
    sample_top_k: int = 0
    seed: float | None = None  # the uniform draw; None = RAND()
    draw: float = 0.5  # with RAND(): the draw the expected (and cached) values assume; verify reads the sheet's
    cached_values: bool = True  # store each formula's value, so the file shows its answer before any recalculation
    token_ids: list[int] | None = None  # --python-tokenizer workbooks: the ids typed in (verify reads them back)
    lens_target: int | None = None  # the logit lens's target token; None = the prediction (a formula)
    steer: Steering = field(default_factory=Steering)


# ---- what every command refuses (one place: the CLI and the library call these) --------------------------------
STEER_MAX = 1e100  # |coef x vector|: its square summed over n_embd in layer norm stays far below 1.8e308
MAX_WORD_BYTES = 1024  # the bpe tab needs (bytes - 1) steps of rows and that many columns
MAX_CELL_CHARS = 32_767  # Excel's limit on the text of one cell (the prompt)


def _bad(msg: str):
    from ..errors import XlgptError

    return XlgptError(msg)


def _whole(flag: str, v, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise _bad(f"{flag} must be a whole number of at least {low}, not {v!r}")
    return int(v)


def check_text(text: str, what: str = "the prompt", stored: bool = True) -> str:
    """Text the tokenizer can read: valid Unicode (no lone surrogates, e.g. invalid UTF-8 on the command
    line); `stored`: also text a cell of the .xlsx file gives back exactly (xlsx/writer.py's cell_text)."""
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise _bad(f"{what} is not valid Unicode: character {i + 1} is a lone surrogate U+{ord(ch):04X} "
                       "(invalid UTF-8?)")
    if stored:
        from ..xlsx.writer import IllegalText, cell_text

        try:
            cell_text(text)
        except IllegalText as e:
            raise _bad(f"{what} cannot be stored in a workbook: {e}") from None
    return text


def check_sampling(temperature, top_k) -> None:
    if not isinstance(temperature, (int, float)) or not np.isfinite(temperature) or temperature < 0:
        raise _bad(f"--temperature must be a finite number of at least 0 (0 = argmax), not {temperature!r}")
    _whole("--top-k", top_k, 0)


def check_draw(u) -> None:
    """build --seed: the pinned uniform draw."""
    if u is not None and not (isinstance(u, (int, float)) and 0 <= u < 1):
        raise _bad(f"--seed pins the uniform draw: a number in [0, 1), not {u!r}")


def check_rng_seed(seed) -> None:
    """generate --seed: the seed of its random draws."""
    if seed is not None:
        _whole("--seed", seed, 0)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # what the sheet's LEN counts (an emoji is 2)


def check_options(opts: BuildOptions) -> None:
    """A build's options that are wrong whatever the model (checked before anything is loaded)."""
    check_text(opts.prompt)
    _whole("--context", opts.context, 1)
    _whole("--show-top", opts.top_k, 1)
    check_sampling(opts.temperature, opts.sample_top_k)
    check_draw(opts.seed)
    _whole("--max-chars", opts.max_chars, 0)  # 0: the default
    if opts.max_chars > MAX_CELL_CHARS:
        raise _bad(f"--max-chars must be at most {MAX_CELL_CHARS:,} (the text an Excel cell holds), not {opts.max_chars}")
    _whole("--max-word-bytes", opts.max_word_bytes, 1)
    if opts.max_word_bytes > MAX_WORD_BYTES:
        raise _bad(f"--max-word-bytes must be at most {MAX_WORD_BYTES}, not {opts.max_word_bytes}")
    units = utf16_units(opts.prompt)
    if units > MAX_CELL_CHARS:
        raise _bad(f"the prompt is {units:,} characters (UTF-16 units); an Excel cell holds at most {MAX_CELL_CHARS:,}")
    _whole("--steer-positions", opts.steer.positions, 0)


def check_build(opts: BuildOptions, n_ctx: int, n_embd: int, pretokens: list[str]) -> None:
    """Everything about a build's options that would give a workbook that cannot work, given the model's
    n_ctx and n_embd and the prompt's pre-tokens. Resolves max_chars 0 (8 x context, grown to fit the prompt)."""
    check_options(opts)
    if opts.context > n_ctx:
        raise _bad(f"--context must be between 1 and the model's n_ctx ({n_ctx}), not {opts.context}")
    if opts.live_tokenizer:
        units = utf16_units(opts.prompt)
        if opts.max_chars == 0:
            opts.max_chars = max(8 * opts.context, units)
        if units > opts.max_chars:
            raise _bad(f"the prompt is {units} characters (UTF-16 units) but --max-chars is {opts.max_chars}: "
                       f"pass --max-chars {units} or more")
        longest = max((len(p.encode("utf-8")) for p in pretokens), default=0)
        if longest > opts.max_word_bytes:
            word = max(pretokens, key=lambda p: len(p.encode("utf-8")))
            raise _bad(f"the prompt's word {word!r} is {longest} UTF-8 bytes but --max-word-bytes is "
                       f"{opts.max_word_bytes}: pass --max-word-bytes {longest} or more")
    s = opts.steer
    if s.on and s.vector is not None:
        coef = float(s.coef)
        v = np.asarray(s.vector, dtype=np.float64)
        if v.shape != (n_embd,) or not np.isfinite(coef) or not np.all(np.isfinite(v)):
            raise _bad(f"the steering vector must be {n_embd} finite numbers and its coefficient finite")
        push = abs(coef) * float(np.max(np.abs(v))) if v.size else 0.0
        if not push <= STEER_MAX:
            raise _bad(f"steering adds up to {push:.3g} to the residual stream (coefficient {coef:g}); the sheet "
                       f"would overflow: keep |coefficient x vector| at most {STEER_MAX:g}")
