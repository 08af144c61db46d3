"""Sampling on the prediction tab: temperature, top-k and a uniform draw, by inverse CDF.

  temperature 0 (or less): the argmax, next_token_id.
  otherwise: weight w_v = EXP((logit_v - max) / temperature) for the top-k tokens (ranked by logit, ties to the
  lower id, exactly the order of the top-k table), 0 for the others; the cumulative distribution runs in TOKEN ID
  ORDER (0, 1, 2, ...); the sampled token is the first id v whose cumulative weight w_0 + ... + w_v exceeds
  sample_u x total.

The cheapest exact formulation: the weights are one array formula next to the logits on the lm_head tab
(`sample_w`, V cells), and instead of a running-sum column over the vocabulary the sampler does a binary search
over ids: each of its ceil(log2 V) steps is one SUMIF(vocab_ids, "<=" & mid, sample_w), a native scan. So the
sampler is V array cells plus ~4 x 16 + 10 formula cells at GPT-2's V = 50,257.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import XlgptError
from ..contract import T
from ..layout import Layout, S, Tab
from ..xlsx.book import Between, Range
from .options import BuildOptions

ORDER = ("Inverse-CDF sampling: weights EXP((logit - max) / temperature) for the top-k tokens (ties at the k-th "
         "logit go to the lower id, as in the table above), 0 for the rest; the cumulative sum runs in token-id "
         "order 0, 1, 2, ...; the sampled token is the first id whose cumulative weight exceeds sample_u x total. "
         "Temperature 0 gives the argmax. RAND() draws anew on every recalculation (F9): type a number in [0, 1) "
         "to pin it.")


def check_options(opts: BuildOptions) -> None:
    if not math.isfinite(opts.temperature) or opts.temperature < 0:
        raise XlgptError(f"--temperature must be 0 (argmax) or a positive number, not {opts.temperature}")
    if opts.sample_top_k < 0:
        raise XlgptError(f"--top-k must be 0 (all tokens) or a positive count, not {opts.sample_top_k}")
    if opts.seed is not None and not 0 <= opts.seed < 1:
        raise XlgptError(f"--seed is the uniform draw itself: a number in [0, 1), not {opts.seed}")


def search_steps(vocab_size: int) -> int:
    """Bisection steps that narrow ids -1 .. V-1 down to one."""
    return max(1, math.ceil(math.log2(max(vocab_size, 2))))


def weights(sample_t: str = "sample_t") -> str:
    """The (unnormalised) sampling weight of every token, as an array expression over lm_head_logits."""
    keep = "IF(lm_head_logits>sample_kth,1,IF(lm_head_logits=sample_kth,IF(vocab_ids<=sample_cut_id,1,0),0))"
    return f"{keep}*EXP((lm_head_logits-sample_max)/{sample_t})"


def sampling(book, lay: Layout, t: dict, tab: Tab, opts: BuildOptions, token_text) -> Range:
    """Add the sampling cells below whatever the prediction tab holds so far; returns sampled_token_id."""
    check_options(opts)
    ws, V = tab.ws, lay.V
    ws.width(2, 46)
    r = max([tab.row] + [ch.anchor[0] + ch.size[1] + 1 for ch in ws.charts])  # below the chart
    ws.write(r, 2, "Sampling", S.SECTION)
    ws.write(r, 3, ORDER, S.NOTE)
    r += 1
    u_value = "=RAND()" if opts.seed is None else float(opts.seed)
    inputs = [
        ("temperature", "Temperature (0 = argmax)", float(opts.temperature)),
        ("sample_top_k", "Top-k (0 = all tokens)", int(opts.sample_top_k)),
        ("sample_u", "Uniform draw u in [0, 1)", u_value),
    ]
    for k, (name, label, value) in enumerate(inputs):
        ws.write(r + k, 2, label, S.KEY)
        if isinstance(value, str):
            cell = ws.formula(r + k, 3, value, S.INPUT, value=Between(0.0, 1.0, at=opts.draw))
        else:
            cell = ws.write(r + k, 3, value, S.INPUT)
        tab.define(name, cell)
    r += len(inputs)
    ws.write(r, 2, "Sampled token id", S.KEY)
    ws.write(r + 1, 2, "Sampled token", S.KEY)
    ws.write(r + 2, 2, "its sampling probability", S.KEY)
    sid = Range(tab.name, r, 3, r, 3)
    r_out = r
    r += 4

    # the weights, one per vocabulary entry, are beside the logits on the lm_head tab (sample_w)

    # helpers: effective temperature and k, the k-th logit and the tie cut-off, the total weight
    helpers = [
        ("sample_t", "temperature used (1 when the argmax is taken)", "=IF(temperature>0,temperature,1)", False, S.NUM),
        ("sample_k", "k used", f"=IF(OR(sample_top_k<1,sample_top_k>={V}),{V},INT(sample_top_k))", False, S.INT),
        ("sample_max", "max logit", "=lm_head_max", False, S.NUM),
        ("sample_kth", "k-th largest logit", "=LARGE(lm_head_logits,sample_k)", False, S.NUM),
        ("sample_above", "tokens above it", "=SUM(IF(lm_head_logits>sample_kth,1,0))", True, S.INT),
        ("sample_cut_id", "last id kept among ties at the k-th logit",
         "=SMALL(IF(lm_head_logits=sample_kth,vocab_ids),sample_k-sample_above)", True, S.INT),
        ("sample_total", "total weight", "=SUM(sample_w)", False, S.NUM),
        ("sample_threshold", "u x total", "=sample_u*sample_total", False, S.NUM),
    ]
    for k, (name, label, formula, is_array, style) in enumerate(helpers):
        ws.write(r + k, 2, label, S.LABEL)
        cell = Range(tab.name, r + k, 3, r + k, 3)
        (ws.array(cell, formula, style, value=t[name]) if is_array else
         ws.formula(r + k, 3, formula, style, value=t[name]))
        ws.write(r + k, 4, formula, S.FORMULA)
        tab.define(name, cell)
    r += len(helpers) + 1

    # the binary search: lo stays below the answer, hi at or above it
    steps = search_steps(V)
    ws.write(r, 2, f"binary search over token ids ({steps} steps): the first id whose cumulative weight exceeds "
             "u x total", S.SECTION)
    hdr = r + 1
    for j, lab in enumerate(["lo", "hi", "mid", "cumulative weight of ids 0..mid"]):
        ws.write(hdr, 3 + j, lab, S.INDEX)
    first = hdr + 1
    search = bisection(t[T.sample_w()][:, 0], float(t[T.sample_threshold()][0, 0]), steps)
    for s in range(steps + 1):
        rr = first + s
        lo, hi, mid, cum = search[s]
        ws.write(rr, 2, s, S.POS)
        if s == 0:
            ws.write(rr, 3, -1, S.INT)
            ws.write(rr, 4, V - 1, S.INT)
        else:
            prev = rr - 1
            ws.formula(rr, 3, f"=IF(F{prev}>sample_threshold,C{prev},E{prev})", S.INT, value=lo)
            ws.formula(rr, 4, f"=IF(F{prev}>sample_threshold,E{prev},D{prev})", S.INT, value=hi)
        if s < steps:
            ws.formula(rr, 5, f"=INT((C{rr}+D{rr})/2)", S.INT, value=mid)
            ws.formula(rr, 6, f'=SUMIF(vocab_ids,"<="&E{rr},sample_w)', S.NUM, value=cum)
    answer = f"D{first + steps}"
    ws.write(first + steps, 5, "<- hi is the sampled id", S.NOTE)
    tab.row = first + steps + 2

    sampled = int(t[T.sampled_token_id()][0, 0])
    sid = tab.define(T.sampled_token_id(), ws.formula(
        r_out, 3, f"=IF(temperature>0,{answer},next_token_id)", S.INT, value=sampled))
    tab.define(T.sampled_token(), ws.formula(r_out + 1, 3, f'=IF(status<>"",status,{token_text(sid.ref)})', S.BIG,
                                             value=token_text.text(sampled)))
    tab.define(T.sampled_prob(), ws.formula(
        r_out + 2, 3, "=IF(temperature>0,SUMIF(vocab_ids,sampled_token_id,sample_w)/sample_total,1)", S.PROB,
        value=t[T.sampled_prob()]))
    ws.write(r_out + 2, 4, "(1 at temperature 0: the argmax is certain)", S.NOTE)
    return sid



def bisection(w, threshold: float, steps: int) -> list[tuple[int, int, int | None, float | None]]:
    """The search table as the sheet fills it: (lo, hi, mid, cumulative weight of ids 0..mid) per step."""
    cum = np.cumsum(w)
    lo, hi, out = -1, len(w) - 1, []
    for s in range(steps + 1):
        if s < steps:
            mid = math.floor((lo + hi) / 2)
            c = float(cum[mid]) if mid >= 0 else 0.0
            out.append((lo, hi, mid, c))
            lo, hi = (lo, mid) if c > threshold else (mid, hi)
        else:
            out.append((lo, hi, None, None))
    return out
