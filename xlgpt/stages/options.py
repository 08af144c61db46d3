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
    token_ids: list[int] | None = None  # --python-tokenizer workbooks: the ids typed in (verify reads them back)
    lens_target: int | None = None  # the logit lens's target token; None = the prediction (a formula)
    steer: Steering = field(default_factory=Steering)
