"""Config and checkpoint checks of model.py that accept: values a forward pass can run with, and an
untied LM head that equals wte (the refusals are in test_bad_input.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from xlgpt.errors import XlgptError
from xlgpt.model import GPT2Config, load_model, param_shapes, save_folder


def test_lm_head_equal_to_wte_is_accepted(tmp_path):
    folder = save_folder(load_model("tiny"), tmp_path / "m")
    w = load_file(str(folder / "model.safetensors"))
    w["lm_head.weight"] = w["wte.weight"].copy()
    save_file(w, str(folder / "model.safetensors"))
    m = load_model(str(folder))
    assert np.array_equal(m.params["wte"], w["wte.weight"])


@pytest.mark.parametrize("kw", [dict(n_layer=0), dict(n_head=0), dict(n_embd=15), dict(n_ctx=0),
                                dict(layer_norm_epsilon=math.nan), dict(layer_norm_epsilon=0.0),
                                dict(layer_norm_epsilon=-1e-5), dict(layer_norm_epsilon=math.inf)])
def test_config_values_a_forward_pass_cannot_run_with(kw):
    base = dict(n_layer=1, n_head=2, n_embd=16, n_ctx=8, vocab_size=10)
    with pytest.raises(XlgptError):
        GPT2Config(**{**base, **kw})


def test_n_params_is_the_sum_of_the_shapes():
    cfg = GPT2Config(n_layer=3, n_head=2, n_embd=8, n_ctx=5, vocab_size=11)
    assert cfg.n_params == sum(int(np.prod(s)) for s in param_shapes(cfg).values())
