"""Formula pieces shared by several stages."""
from __future__ import annotations

import numpy as np

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
