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

    MATCH is a fast native scan; only when the value is tied does the sheet fall back to SMALL(IF(...)),
    which walks the whole column in array arithmetic (slow in IronCalc at 50k rows; IF is lazy there)."""
    return (f"=IF(COUNTIF({values},{value})=1,MATCH({value},{values},0)-1,"
            f"SMALL(IF({values}={value},vocab_ids),{occurrence}))")


def last_token(x: str) -> str:
    """The last real token's row of x [N, C] -> [1, C], as a formula (without "="): a one-hot row times x."""
    return f"MMULT(TRANSPOSE(IF({T.positions()}={T.n_tokens()}-1,1,0)),{x})"


def top_k(ws, logits: str, mx: str, sm: str, rows: list[tuple[Range, Range, Range, Range]], texts: list[str],
          ids, logit_values, prob_values, token_text) -> None:
    """The k most likely tokens of one column of logits, rank by rank: (logit, id, probability, text) cells.

    logit: LARGE(logits, rank); id: top_id (ties to the lower id); probability: EXP(logit - max) / sum, as
    the column's softmax computes it (reading one cell of an array formula by INDEX can see a stale value in
    IronCalc, which does not track that dependency); text: texts[rank] (a formula showing the id as text)."""
    first = rows[0][0]
    for i, (lg, idc, p, tx) in enumerate(rows):
        lg_ref = lg.local(False)
        ws.formula(lg.r1, lg.c1, f"=LARGE({logits},{i + 1})", S.NUM, value=logit_values[i])
        occurrence = f"COUNTIF({col_letter(first.c1)}${first.r1}:{lg_ref},{lg_ref})" if i else "1"
        ws.array(idc, top_id(logits, lg_ref, occurrence), S.INT, value=int(ids[i]))
        ws.formula(p.r1, p.c1, f"=EXP({lg_ref}-{mx})/{sm}", S.PROB, value=prob_values[i])
        ws.formula(tx.r1, tx.c1, f"={texts[i]}", S.TEXT, value=token_text.text(int(ids[i])))
