"""The steer tab: a vector times a coefficient, added to the residual stream entering one block.

steer_add [N, C] = IF(steer_on, steer_coef, 0) * steer_vector [1, C] * steer_mask [N, 1]
Each block_i adds IF(steer_layer = i, steer_add, 0) to its resid_pre. With the switch off or the
coefficient 0 it adds exactly 0, so the workbook computes the unsteered model.
"""
from __future__ import annotations

import numpy as np

from ..contract import T
from ..layout import STEER, Layout, S, Tab
from ..reference import steer_add
from .common import diverging
from .options import Steering

HOW = [
    "Where vectors come from (xlgpt build):",
    "  --steer-vector FILE.npy --steer-layer L: any vector of n_embd values.",
    "  --steer-diff PLUS MINUS --steer-layer L: activation steering, resid_pre(PLUS) - resid_pre(MINUS) entering "
    "block L from the NumPy reference on this model; the last position (default) or each prompt's mean over "
    "its positions (--steer-mean).",
    "  --steer-sae RELEASE:LAYER:FEATURE: row FEATURE of a sparse autoencoder's decoder W_dec, e.g. "
    "gpt2-small-res-jb:2:7650 (the 'Jedi' feature of GPT-2 small, trained on blocks.2.hook_resid_pre).",
    "Default coefficient: 1 for a file or an activation difference (the vector as given / measured); for an SAE "
    "feature, |resid_pre at the last token| / |W_dec row| (the push is as long as the stream it joins).",
    "Set steer_on to FALSE or the coefficient to 0 and every block computes exactly the unsteered values.",
]


def steer_tab(book, lay: Layout, t: dict, steer: Steering) -> Tab:
    tab = Tab(book, STEER, N=lay.N, C=lay.C, L=lay.L)
    ws, r = tab.ws, tab.row
    controls = [
        ("steer_on", "Steering on (TRUE/FALSE)", bool(steer.on)),
        ("steer_layer", f"Add to the residual stream entering block (0..{lay.L - 1})", int(steer.layer)),
        ("steer_coef", "Coefficient", float(steer.coef)),
        ("steer_positions", "Only the first P positions (0 = all)", int(steer.positions)),
    ]
    for k, (name, label, value) in enumerate(controls):
        ws.write(r + k, 2, label, S.KEY)
        tab.define(name, ws.write(r + k, 3, value, S.INPUT))
    r += len(controls)
    vec = np.asarray(steer.vector if steer.vector is not None else np.zeros(lay.C), dtype=np.float64).reshape(-1)
    info = [
        ("Vector source", steer.source),
        ("Coefficient chosen", steer.coef_reason or ("no vector given: all zeros" if steer.vector is None else "")),
    ]
    for k, (label, text) in enumerate(info):
        ws.write(r + k, 2, label, S.KEY)
        ws.write(r + k, 3, text, S.TEXT)
    r += len(info)
    ws.write(r, 2, "|vector| (length)", S.KEY)
    ws.write(r + 1, 2, "|coefficient x vector| (added per position)", S.KEY)
    r_norm = r
    r += 3
    for k, line in enumerate(HOW):
        ws.write(r + k, 2, line, S.NOTE)
    tab.row = r + len(HOW) + 1

    sec = tab.section("steer_vector: the direction added (one value per dimension)", "", rows=1, cols=lay.C,
                      positions=False)
    ws.write(sec.r1, 2, "vector", S.LABEL)
    vector = tab.define("steer_vector", diverging(tab, ws.block(sec.r1, sec.c1, (1, lay.C), vec.reshape(1, -1), S.NUM)))
    norm = float(np.sqrt(np.sum(vec ** 2)))
    ws.formula(r_norm, 3, "=SQRT(SUMSQ(steer_vector))", S.NUM, value=norm)
    ws.formula(r_norm + 1, 3, "=IF(steer_on,ABS(steer_coef),0)*SQRT(SUMSQ(steer_vector))", S.NUM,
               value=abs(steer.coef) * norm if steer.on else 0.0)
    labels = book[T.tokens_text()]
    mask_value, add_value = steer_add(lay.N, lay.C, steer.on, steer.coef, vec, steer.positions)
    sec = tab.section("steer_mask: 1 where the vector is added", "=IF(OR(steer_positions=0, position<steer_positions), 1, 0)",
                      rows=lay.N, cols=1, col_labels=["mask"], row_labels=labels)
    for i in range(lay.N):
        ws.formula(sec.r1 + i, sec.c1, f"=IF(OR(steer_positions=0,$A{sec.r1 + i}<steer_positions),1,0)", S.INT,
                   value=int(mask_value[i, 0]))
    mask = tab.define(T.steer_mask(), sec)
    formula = f"=IF(steer_on,steer_coef,0)*{vector.ref}*{mask.ref}"
    sec = tab.section("steer_add: what block steer_layer adds to its input", formula, rows=lay.N, cols=lay.C,
                      row_labels=labels)
    tab.define(T.steer_add(), diverging(tab, ws.array(sec, formula, S.NUM, value=add_value)))
    ws.width(2, 44)
    ws.width(3, 12)
    return tab
