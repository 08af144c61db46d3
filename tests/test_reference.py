"""The NumPy reference against an independent peer: Hugging Face transformers' GPT2LMHeadModel."""
from __future__ import annotations

import numpy as np
import pytest

from xlgpt.model import load_model
from xlgpt.reference import gelu, gpt2, layer_norm, softmax
from xlgpt.tokenizer import Tokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def random_hf_model(tok, seed: int, **config):
    """A random GPT2LMHeadModel of transformers itself, with non-trivial layer norms and biases."""
    cfg = transformers.GPT2Config(vocab_size=tok.vocab_size, activation_function="gelu_new", resid_pdrop=0,
                                  embd_pdrop=0, attn_pdrop=0, **config)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random tiny GPT-2 saved by transformers itself as safetensors, with a cut GPT-2 vocabulary."""
    tok = Tokenizer.gpt2().cut(100)
    model = random_hf_model(tok, seed=0, n_layer=3, n_head=4, n_embd=32, n_positions=24)
    folder = tmp_path_factory.mktemp("hf")
    model.save_pretrained(folder, safe_serialization=True)
    tok.save(folder)
    return folder, model


def hf_forward(model, ids, dtype):
    m = model.to(dtype)
    with torch.no_grad():
        out = m(torch.tensor([ids]), output_hidden_states=True)
    return out.logits[0].numpy(), [h[0].numpy() for h in out.hidden_states]


@pytest.mark.parametrize("n", [1, 5, 24])
def test_reference_equals_transformers(hf_folder, n):
    folder, hf = hf_folder
    ours = load_model(str(folder))
    ids = list(np.random.default_rng(n).integers(0, ours.config.vocab_size, n))
    t = gpt2(ids, ours.params, ours.config)
    logits64, hidden64 = hf_forward(hf, ids, torch.float64)
    logits = (np.asarray(ours.params["wte"], dtype=np.float64) @ t["ln_f"].T).T  # every position
    assert np.max(np.abs(logits - logits64)) < 1e-10  # same float32 weights, both in float64
    for i in range(ours.config.n_layer):
        assert np.max(np.abs(t[f"block_{i}_resid_pre"] - hidden64[i])) < 1e-10
    assert np.max(np.abs(t["ln_f"] - hidden64[-1])) < 1e-10
    assert np.max(np.abs(t["lm_head_logits"][:, 0] - logits64[-1])) < 1e-10
    logits32, _ = hf_forward(hf, ids, torch.float32)  # the float32 peer, as users run it
    assert np.max(np.abs(logits - logits32)) < 1e-4


def test_operations_match_definitions():
    x = np.linspace(-4, 4, 9)
    assert np.allclose(gelu(x), torch.nn.functional.gelu(torch.tensor(x), approximate="tanh").numpy(), atol=1e-15)
    s = softmax(np.array([[1.0, 2.0, 3.0]]))
    assert np.isclose(s.sum(), 1) and np.all(np.diff(s) > 0)
    out, mean, var = layer_norm(np.array([[1.0, 2.0, 3.0, 6.0]]), np.ones(4), np.zeros(4))
    assert mean[0, 0] == 3.0 and var[0, 0] == 3.5  # population variance
    assert np.allclose(out, (np.array([1, 2, 3, 6]) - 3) / np.sqrt(3.5 + 1e-5))


def test_causal_rows_do_not_depend_on_later_tokens():
    m = load_model("tiny")
    a = gpt2([5, 6, 7, 8], m.params, m.config)
    b = gpt2([5, 6, 7, 100], m.params, m.config)
    assert np.array_equal(a["ln_f"][:3], b["ln_f"][:3])
