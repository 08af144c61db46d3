"""Formula pieces shared by several stages."""
from __future__ import annotations

import numpy as np

from ..contract import T
from ..layout import S, Tab
from ..xlsx.book import ColorScale, Range, col_letter

# Activations: blue below 0, white at 0, red above. The ends are the 1st and 99th percentiles, so a few huge
# values (GPT-2's residual stream has some) do not wash out the rest.
DIVERGING = ("5A8AC6", "FFFFFF", "F8696B")
DIVERGING_POINTS = ("percentile:1", "num:0", "percentile:99")


def diverging(tab: Tab, rng: Range) -> Range:
    """Shade an activation range with the diverging colour scale (one conditional format, no per-cell styles)."""
    tab.ws.color_scales.append(ColorScale(rng, colors=DIVERGING, points=DIVERGING_POINTS))
    return rng


def number(x: float) -> str:
    """A constant as formula text, without exponent notation (1e-05 -> 0.00001)."""
    s = repr(float(x))
    if "e" in s:
        s = f"{x:.20f}".rstrip("0").rstrip(".")
    return s[:-2] if s.endswith(".0") else s


def here(rng: Range, tab: Tab, absolute: bool = True) -> str:
    """Reference to a range as seen from `tab` (without the sheet when on the same sheet)."""
    return rng.local(absolute) if rng.sheet == tab.name else rng.abs


def layer_norm(tab: Tab, t: dict, x: Range, w: str, b: str, names: tuple[str, str, str], title: str,
               labels: Range, eps: float) -> Range:
    """mean and population variance per row, then (x - mean) / SQRT(var + eps) * w + b.   [N, C] -> [N, C]

    names: the output's, its mean's and its variance's defined names (values from the reference dict t)."""
    out, mean_name, var_name = names
    n, c = x.shape
    stats = tab.section(f"{out}: mean and variance of each row", "mean = AVERAGE(x);  var = AVERAGE((x - mean)^2)",
                        rows=n, cols=2, col_labels=["mean", "var"], row_labels=labels)
    for i in range(n):
        row = here(x.rows(i), tab)
        mean = stats.cell(i, 0)
        tab.ws.formula(mean.r1, mean.c1, f"=AVERAGE({row})", S.NUM, value=t[mean_name][i, 0])
        tab.ws.array(stats.cell(i, 1), f"=AVERAGE(({row}-${col_letter(mean.c1)}{mean.r1})^2)", S.NUM,
                     value=t[var_name][i, 0])
    mean_col = tab.define(mean_name, stats.cols(0))
    var_col = tab.define(var_name, stats.cols(1))
    formula = f"=({x.ref}-{mean_col.ref})/SQRT({var_col.ref}+{number(eps)})*{w}+{b}"
    return tab.define(out, diverging(tab, section(tab, title, formula, t[out], labels)))


def section(tab: Tab, title: str, formula: str, value, labels: Range | None = None, explain: str | None = None,
            col_labels=None, style=S.NUM) -> Range:
    """The common stage section: one array formula over [rows x cols], labelled rows, its value stated."""
    value = np.asarray(value)
    rows, cols = value.shape
    sec = tab.section(title, formula if explain is None else explain, rows=rows, cols=cols, col_labels=col_labels,
                      row_labels=labels)
    return tab.ws.array(sec, formula, style, value=value)


def top_id(values: str, value: str, occurrence: str) -> str:
    """The id of the `occurrence`-th entry of `values` (a column over the vocabulary) equal to `value`.

    `occurrence` counts the equal logits in the short top-k list so far (1 for the first rank), never the
    vocabulary: MATCH is a fast native scan, and only a tie (a second equal logit) falls back to SMALL(IF(...)),
    which walks the whole column in array arithmetic (IF is lazy, so untied ranks never pay for it)."""
    match = f"MATCH({value},{values},0)-1"
    if occurrence == "1":
        return "=" + match
    return f"=IF({occurrence}=1,{match},SMALL(IF({values}={value},vocab_ids),{occurrence}))"


def occurrence(first: str, value: str) -> str:
    """How many entries of the top-k list from `first` down to `value` equal it (1 unless tied): an array sum
    over at most k cells (COUNTIF would measure the whole sheet's extent on every call in IronCalc)."""
    return f"SUM(IF({first}:{value}={value},1,0))"


def last_token(x: str) -> str:
    """The last real token's row of x [N, C] -> [1, C], as a formula (without "="): a one-hot row times x."""
    return f"MMULT(TRANSPOSE(IF({T.positions()}={T.n_tokens()}-1,1,0)),{x})"


def top_k(ws, logits: str, mx: str, sm: str, rows: list[tuple[Range, Range, Range, Range]], texts: list[str],
          ids, logit_values, prob_values, token_text, top1_id: str | None = None,
          same_as: tuple[Range, Range] | None = None) -> None:
    """The k most likely tokens of one column of logits, rank by rank: (logit, id, probability, text) cells.

    logit: LARGE(logits, rank), rank 1 the column's max `mx` already computed; id: top_id (ties to the lower
    id), rank 1 `top1_id` when the argmax is already known; probability: EXP(logit - max) / sum, as the
    column's softmax computes it (reading one cell of an array formula by INDEX can see a stale value in
    IronCalc, which does not track that dependency); text: texts[rank] (a formula showing the id as text).
    same_as: (logits, ids) of a table computing the same column, repeated instead of scanning it again.
    Every LARGE or MATCH reads all V logits, the slow part of a recalculation at GPT-2's size."""
    first = f"{col_letter(rows[0][0].c1)}${rows[0][0].r1}"
    for i, (lg, idc, p, tx) in enumerate(rows):
        lg_ref = lg.local(False)
        if same_as is not None:
            f_lg, f_id = f"={same_as[0].cell(i).abs}", f"={same_as[1].cell(i).abs}"
        else:
            f_lg = f"=LARGE({logits},{i + 1})" if i else f"={mx}"
            f_id = f"={top1_id}" if i == 0 and top1_id else None
        ws.formula(lg.r1, lg.c1, f_lg, S.NUM, value=logit_values[i])
        if f_id is not None:
            ws.formula(idc.r1, idc.c1, f_id, S.INT, value=int(ids[i]))
        else:
            ws.array(idc, top_id(logits, lg_ref, occurrence(first, lg_ref) if i else "1"), S.INT, value=int(ids[i]))
        ws.formula(p.r1, p.c1, f"=EXP({lg_ref}-{mx})/{sm}", S.PROB, value=prob_values[i])
        ws.formula(tx.r1, tx.c1, f"={texts[i]}", S.TEXT, value=token_text.text(int(ids[i])))


def softmax_stats(ws, logits: str, mx: Range, sm: Range, max_value, sum_value, mx_ref: str | None = None) -> None:
    """The softmax's two pieces of one column of logits: max = MAX(logits), sum = SUM(EXP(logits - max)) (the
    probabilities are then EXP(logit - max) / sum). mx_ref: how the sum refers to the max (default its address)."""
    ws.formula(mx.r1, mx.c1, f"=MAX({logits})", S.NUM, value=max_value)
    ws.array(sm, f"=SUM(EXP({logits}-{mx_ref or mx.local()}))", S.NUM, value=sum_value)
