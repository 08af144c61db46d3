"""The NumPy reference: GPT-2's forward pass in float64, one short function per operation (after picoGPT).

`gpt2()` returns every intermediate under the same names as the workbook's defined names, so that
`verify` can compare them stage by stage. Shapes: N tokens, C = n_embd, H heads of D = C/H, V vocabulary.
"""
from __future__ import annotations

import numpy as np

from .model import GPT2Config


def gelu(x):  # GPT-2's tanh approximation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def layer_norm(x, g, b, eps=1e-5):  # [N, C] -> [N, C], with the statistics the workbook shows
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)  # population variance
    return (x - mean) / np.sqrt(var + eps) * g + b, mean, var


def linear(x, w, b):  # [N, in] @ [in, out] + [out] (Conv1D layout)
    return x @ w + b


def attention(q, k, v):  # [N, D] x3 -> scores [N, N], weights [N, N], out [N, D]
    n = q.shape[0]
    scores = q @ k.T / np.sqrt(q.shape[-1])
    causal = np.tril(np.ones((n, n), dtype=bool))
    weights = softmax(np.where(causal, scores, -np.inf))
    return scores, weights, weights @ v


def mha(x, p, n_head, t, name):  # [N, C] -> [N, C]
    qkv = linear(x, p["attn_c_attn_w"], p["attn_c_attn_b"])  # [N, 3C]
    q, k, v = np.split(qkv, 3, axis=-1)
    t[f"{name}_qkv"], t[f"{name}_q"], t[f"{name}_k"], t[f"{name}_v"] = qkv, q, k, v
    heads = []
    for h, (qh, kh, vh) in enumerate(zip(*(np.split(m, n_head, axis=-1) for m in (q, k, v)))):
        t[f"{name}_scores_h{h}"], t[f"{name}_attn_h{h}"], out = attention(qh, kh, vh)
        heads.append(out)
    t[f"{name}_z"] = np.hstack(heads)  # [N, C], the heads side by side
    return linear(t[f"{name}_z"], p["attn_c_proj_w"], p["attn_c_proj_b"])


def ffn(x, p, t, name):  # [N, C] -> [N, 4C] -> [N, C]
    t[f"{name}_mlp_fc"] = linear(x, p["mlp_c_fc_w"], p["mlp_c_fc_b"])
    t[f"{name}_mlp_gelu"] = gelu(t[f"{name}_mlp_fc"])
    return linear(t[f"{name}_mlp_gelu"], p["mlp_c_proj_w"], p["mlp_c_proj_b"])


def transformer_block(x, p, n_head, eps, t, name):  # [N, C] -> [N, C]
    t[f"{name}_resid_pre"] = x
    t[f"{name}_ln_1"], t[f"{name}_ln_1_mean"], t[f"{name}_ln_1_var"] = layer_norm(x, p["ln_1_w"], p["ln_1_b"], eps)
    t[f"{name}_attn_out"] = mha(t[f"{name}_ln_1"], p, n_head, t, name)
    x = t[f"{name}_resid_mid"] = x + t[f"{name}_attn_out"]
    t[f"{name}_ln_2"], t[f"{name}_ln_2_mean"], t[f"{name}_ln_2_var"] = layer_norm(x, p["ln_2_w"], p["ln_2_b"], eps)
    t[f"{name}_mlp_out"] = ffn(t[f"{name}_ln_2"], p, t, name)
    x = t[f"{name}_resid_post"] = x + t[f"{name}_mlp_out"]
    return x


def block_params(params, i):
    prefix = f"h{i}_"
    return {k[len(prefix):]: np.asarray(params[k], dtype=np.float64) for k in params if k.startswith(prefix)}


def gpt2(ids, params, cfg: GPT2Config, n_real=None, steer=None, lens_target=None, lens_k=10):
    """Forward pass over `ids` (padded to the workbook's context is fine: attention is causal).

    n_real: number of real tokens; the prediction is read at row n_real - 1.
    steer: optional (layer, vector [C] or [N, C]) added to the residual stream entering that block.
    lens_target, lens_k: the logit lens's target token (default: the prediction) and how many top tokens it lists.
    Returns a dict of float64 arrays named like the workbook's defined names."""
    ids = np.asarray(ids)
    n = len(ids)
    n_real = n if n_real is None else n_real
    f64 = lambda name: np.asarray(params[name], dtype=np.float64)  # noqa: E731
    t: dict[str, np.ndarray] = {}
    wte = f64("wte")
    t["embeddings_wte"] = wte[ids]
    t["embeddings_wpe"] = f64("wpe")[:n]
    x = t["embeddings_out"] = t["embeddings_wte"] + t["embeddings_wpe"]  # [N, C]
    add = np.zeros_like(x) if steer is None else np.broadcast_to(np.asarray(steer[1], dtype=np.float64), x.shape)
    t["steer_add"] = add
    for i in range(cfg.n_layer):
        if steer is not None and steer[0] == i:
            x = x + add
        x = transformer_block(x, block_params(params, i), cfg.n_head, cfg.layer_norm_epsilon, t, f"block_{i}")
    t["ln_f"], t["ln_f_mean"], t["ln_f_var"] = layer_norm(x, f64("ln_f_w"), f64("ln_f_b"), cfg.layer_norm_epsilon)
    t["lm_head_x"] = t["ln_f"][n_real - 1 : n_real]  # [1, C]: the last real token
    t["lm_head_logits"] = (wte @ t["lm_head_x"].T)  # [V, 1], the LM head tied to wte
    t["prediction_probs"] = softmax(t["lm_head_logits"].T).T  # [V, 1]
    t["next_token_id"] = np.array([[int(np.argmax(t["lm_head_logits"]))]])
    for i in range(cfg.n_layer):
        for h in range(cfg.n_head):
            t[f"attention_{i}_h{h}"] = t[f"block_{i}_attn_h{h}"]
    target = int(t["next_token_id"][0, 0]) if lens_target is None else int(lens_target)
    t.update(logit_lens(t, wte, f64("ln_f_w"), f64("ln_f_b"), cfg, n_real, target, lens_k))
    return t


def top_k(values, k):
    """Indices of the k largest values, ties broken by the lower index (as MATCH does)."""
    v = np.asarray(values).ravel()
    return list(np.lexsort((np.arange(len(v)), -v))[:k])


def logit_lens(t, wte, ln_f_w, ln_f_b, cfg: GPT2Config, n_real, target, k):
    """The stream entering each block and the final one, at the last real token, through ln_f (each row with its
    own statistics) and the tied unembedding. Columns are layers: logits [V, L+1]; top-k [k, L+1]."""
    L = cfg.n_layer
    rows = [t[f"block_{i}_resid_pre"][n_real - 1] for i in range(L)] + [t[f"block_{L - 1}_resid_post"][n_real - 1]]
    out = {"lens_x": np.stack(rows)}
    out["lens_ln"], out["lens_ln_mean"], out["lens_ln_var"] = layer_norm(out["lens_x"], ln_f_w, ln_f_b,
                                                                          cfg.layer_norm_epsilon)
    logits = out["lens_logits"] = wte @ out["lens_ln"].T  # [V, L+1]
    mx = out["lens_max"] = np.max(logits, axis=0, keepdims=True)
    sm = out["lens_sum"] = np.sum(np.exp(logits - mx), axis=0, keepdims=True)
    out["lens_probs"] = np.exp(logits - mx) / sm
    k = min(k, logits.shape[0])
    ids = np.array([top_k(logits[:, j], k) for j in range(L + 1)]).T  # [k, L+1]
    out["lens_top_ids"] = ids
    out["lens_top_logits"] = np.take_along_axis(logits, ids, axis=0)
    out["lens_top_probs"] = np.exp(out["lens_top_logits"] - mx) / sm
    out["lens_target"] = np.array([[target]])
    tl = out["lens_target_logit"] = logits[target : target + 1]  # [1, L+1]
    out["lens_target_rank"] = 1 + np.sum(logits > tl, axis=0, keepdims=True)
    out["lens_target_prob"] = np.exp(tl - mx) / sm
    return out


def sample_token(logits, temperature: float, top_k_: int, u: float) -> int:
    """The workbook's sampler: temperature 0 (or less) is the argmax (lowest id on ties). Otherwise weights
    exp((logit - max) / temperature) for the top-k tokens (ties at the k-th logit go to the lower id; k < 1 or
    k >= V means all), 0 for the others; the cumulative sum runs in token-id order and the sampled token is the
    first id whose cumulative weight exceeds u x total (the last id if none does, i.e. u >= 1)."""
    v = np.asarray(logits, dtype=np.float64).ravel()
    if temperature <= 0:
        return int(np.argmax(v))
    n = len(v)
    k = n if top_k_ < 1 or top_k_ >= n else int(top_k_)
    keep = np.zeros(n, dtype=bool)
    keep[top_k(v, k)] = True
    w = np.where(keep, np.exp((v - np.max(v)) / temperature), 0.0)
    cum = np.cumsum(w)
    above = np.nonzero(cum > u * cum[-1])[0]
    return int(above[0]) if len(above) else n - 1
