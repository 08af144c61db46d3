"""The NumPy reference: GPT-2's forward pass in float64, one short function per operation (after picoGPT).

`gpt2()` returns every intermediate under the same names as the workbook's defined names, so that
`verify` can compare them stage by stage. Shapes: N tokens, C = n_embd, H heads of D = C/H, V vocabulary.
"""
from __future__ import annotations

import numpy as np

from .contract import T
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


def attention(q, k, v):  # [N, D] x3 -> scores, the softmax's pieces (the head's max, each row's sum), weights, out
    n = q.shape[0]
    scores = q @ k.T / np.sqrt(q.shape[-1])
    causal = np.tril(np.ones((n, n), dtype=bool))
    masked = np.where(causal, scores, -np.inf)
    mx = np.max(scores, keepdims=True).reshape(1, 1)  # one max per head: a row's softmax ignores the constant
    e = np.exp(masked - mx)
    sm = np.sum(e, axis=-1, keepdims=True)
    weights = e / sm
    return scores, mx, sm, weights, weights @ v


def mha(x, p, n_head, t, l):  # [N, C] -> [N, C]
    qkv = t[T.block_qkv(l)] = linear(x, p["attn_c_attn_w"], p["attn_c_attn_b"])  # [N, 3C]
    q, k, v = t[T.block_q(l)], t[T.block_k(l)], t[T.block_v(l)] = np.split(qkv, 3, axis=-1)
    heads = []
    for h, (qh, kh, vh) in enumerate(zip(*(np.split(m, n_head, axis=-1) for m in (q, k, v)))):
        t[T.block_q_h(l, h)], t[T.block_k_h(l, h)], t[T.block_v_h(l, h)] = qh, kh, vh
        (t[T.block_scores_h(l, h)], t[T.block_attn_max_h(l, h)], t[T.block_attn_sum_h(l, h)],
         t[T.block_attn_h(l, h)], out) = attention(qh, kh, vh)
        t[T.block_z_h(l, h)] = out
        t[T.attention_h(l, h)] = t[T.block_attn_h(l, h)]  # the attention tab shows the same maps
        heads.append(out)
    z = t[T.block_z(l)] = np.hstack(heads)  # [N, C], the heads side by side
    return linear(z, p["attn_c_proj_w"], p["attn_c_proj_b"])


def ffn(x, p, t, l):  # [N, C] -> [N, 4C] -> [N, C]
    fc = t[T.block_mlp_fc(l)] = linear(x, p["mlp_c_fc_w"], p["mlp_c_fc_b"])
    g = t[T.block_mlp_gelu(l)] = gelu(fc)
    return linear(g, p["mlp_c_proj_w"], p["mlp_c_proj_b"])


def transformer_block(x, p, n_head, eps, t, l):  # [N, C] -> [N, C]
    t[T.block_resid_pre(l)] = x
    ln_1, t[T.block_ln_1_mean(l)], t[T.block_ln_1_var(l)] = layer_norm(x, p["ln_1_w"], p["ln_1_b"], eps)
    t[T.block_ln_1(l)] = ln_1
    a = t[T.block_attn_out(l)] = mha(ln_1, p, n_head, t, l)
    x = t[T.block_resid_mid(l)] = x + a
    ln_2, t[T.block_ln_2_mean(l)], t[T.block_ln_2_var(l)] = layer_norm(x, p["ln_2_w"], p["ln_2_b"], eps)
    t[T.block_ln_2(l)] = ln_2
    m = t[T.block_mlp_out(l)] = ffn(ln_2, p, t, l)
    x = t[T.block_resid_post(l)] = x + m
    return x


def block_params(params, i):
    prefix = f"h{i}_"
    return {k[len(prefix):]: np.asarray(params[k], dtype=np.float64) for k in params if k.startswith(prefix)}


def steer_add(n: int, C: int, on: bool, coef: float, vector, positions: int):
    """What the steer tab adds: IF(on, coef, 0) x vector [1, C] x mask [N, 1] (mask: the first P positions, 0 = all)."""
    mask = (np.ones(n) if positions == 0 else (np.arange(n) < positions).astype(float))[:, None]
    vec = np.zeros(C) if vector is None else np.asarray(vector, dtype=np.float64).reshape(-1)
    return mask, (coef if on else 0.0) * vec[None, :] * mask


def gpt2(ids, params, cfg: GPT2Config, n_real=None, steer=None, lens_target=None, lens_k=10):
    """Forward pass over `ids` (padded to the workbook's context is fine: attention is causal).

    n_real: number of real tokens; the prediction is read at row n_real - 1.
    steer: optional (layer, vector [C] or [N, C]) added to the residual stream entering that block.
    lens_target, lens_k: the logit lens's target token (default: the prediction) and how many top tokens it lists.
    Returns a dict of float64 arrays named like the workbook's defined names (xlgpt.contract)."""
    ids = np.asarray(ids)
    n = len(ids)
    n_real = n if n_real is None else n_real
    f64 = lambda name: np.asarray(params[name], dtype=np.float64)  # noqa: E731
    t: dict[str, np.ndarray] = {}
    wte = f64("wte")
    t[T.embeddings_wte()] = wte[ids]
    t[T.embeddings_wpe()] = f64("wpe")[:n]
    x = t[T.embeddings_out()] = t[T.embeddings_wte()] + t[T.embeddings_wpe()]  # [N, C]
    add = np.zeros_like(x) if steer is None else np.broadcast_to(np.asarray(steer[1], dtype=np.float64), x.shape)
    t[T.steer_add()] = add
    for i in range(cfg.n_layer):
        if steer is not None and steer[0] == i:
            x = x + add
        x = transformer_block(x, block_params(params, i), cfg.n_head, cfg.layer_norm_epsilon, t, i)
    t[T.ln_f()], t[T.ln_f_mean()], t[T.ln_f_var()] = layer_norm(x, f64("ln_f_w"), f64("ln_f_b"), cfg.layer_norm_epsilon)
    t[T.lm_head_x()] = t[T.ln_f()][n_real - 1 : n_real]  # [1, C]: the last real token
    logits = t[T.lm_head_logits()] = (wte @ t[T.lm_head_x()].T)  # [V, 1], the LM head tied to wte
    mx = t[T.lm_head_max()] = np.max(logits, keepdims=True).reshape(1, 1)
    sm = t[T.lm_head_sum()] = np.sum(np.exp(logits - mx)).reshape(1, 1)
    t[T.prediction_probs()] = np.exp(logits - mx) / sm  # [V, 1]
    t[T.next_token_id()] = np.array([[int(np.argmax(logits))]])
    ids_k = np.array(top_k(logits, min(lens_k, len(logits))))[:, None]
    t[T.top_ids()] = ids_k
    t[T.top_logits()] = logits[ids_k[:, 0]]
    t[T.top_probs()] = np.exp(t[T.top_logits()] - mx) / sm
    target = int(t[T.next_token_id()][0, 0]) if lens_target is None else int(lens_target)
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
    rows = [t[T.block_resid_pre(i)][n_real - 1] for i in range(L)] + [t[T.block_resid_post(L - 1)][n_real - 1]]
    out = {"lens_x": np.stack(rows)}
    out[T.lens_ln()], out[T.lens_ln_mean()], out[T.lens_ln_var()] = layer_norm(out[T.lens_x()], ln_f_w, ln_f_b,
                                                                          cfg.layer_norm_epsilon)
    logits = out[T.lens_logits()] = wte @ out[T.lens_ln()].T  # [V, L+1]
    mx = out[T.lens_max()] = np.max(logits, axis=0, keepdims=True)
    sm = out[T.lens_sum()] = np.sum(np.exp(logits - mx), axis=0, keepdims=True)
    out[T.lens_probs()] = np.exp(logits - mx) / sm
    k = min(k, logits.shape[0])
    ids = np.array([top_k(logits[:, j], k) for j in range(L + 1)]).T  # [k, L+1]
    top = np.take_along_axis(logits, ids, axis=0)
    ids[:, L], top[:, L] = t[T.top_ids()][:k, 0], t[T.top_logits()][:k, 0]  # the final column is the prediction's
    out[T.lens_top_ids()] = ids
    out[T.lens_top_logits()] = top
    out[T.lens_top_probs()] = np.exp(out[T.lens_top_logits()] - mx) / sm
    out[T.lens_target()] = np.array([[target]])
    tl = out[T.lens_target_logit()] = logits[target : target + 1]  # [1, L+1]
    out[T.lens_target_rank()] = 1 + np.sum(logits > tl, axis=0, keepdims=True)
    out[T.lens_target_prob()] = np.exp(tl - mx) / sm
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


def sampling(logits, temperature: float, top_k_: int, u: float) -> dict[str, np.ndarray]:
    """The sampler's intermediates as the prediction tab shows them (sample_token is its answer)."""
    v = np.asarray(logits, dtype=np.float64).reshape(-1, 1)
    n = len(v)
    k = n if top_k_ < 1 or top_k_ >= n else int(top_k_)
    t_ = temperature if temperature > 0 else 1.0
    mx = float(np.max(v))
    kth = float(np.sort(v[:, 0])[::-1][k - 1])
    above = int(np.sum(v > kth))
    cut = int(np.nonzero(v[:, 0] == kth)[0][k - above - 1])
    keep = (v > kth) | ((v == kth) & (np.arange(n)[:, None] <= cut))
    w = np.where(keep, np.exp((v - mx) / t_), 0.0)
    total = float(np.sum(w))
    sid = sample_token(v, temperature, top_k_, u)
    one = lambda x: np.array([[x]])  # noqa: E731
    return {T.sample_w(): w, T.sample_t(): one(t_), T.sample_k(): one(k), T.sample_max(): one(mx),
            T.sample_kth(): one(kth), T.sample_above(): one(above), T.sample_cut_id(): one(cut),
            T.sample_total(): one(total), T.sample_threshold(): one(u * total), T.sampled_token_id(): one(sid),
            T.sampled_prob(): one(w[sid, 0] / total if temperature > 0 else 1.0)}
