"""The steer tab: a vector times a coefficient, added to the residual stream entering one block.

steer_add [N, C] = IF(steer_on, steer_coef, 0) * steer_vector [1, C] * steer_mask [N, 1]
Each block_i adds IF(steer_layer = i, steer_add, 0) to its resid_pre. With the switch off or the
coefficient 0 it adds exactly 0, so the workbook computes the unsteered model.
"""
from __future__ import annotations

import numpy as np

from ..layout import STEER, Layout, S, Tab
from .options import Steering


def steer_tab(book, lay: Layout, steer: Steering) -> Tab:
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
    ws.write(r + len(controls), 2, "Vector source", S.KEY)
    ws.write(r + len(controls), 3, steer.source, S.TEXT)
    tab.row = r + len(controls) + 2
    vec = steer.vector if steer.vector is not None else np.zeros(lay.C)
    sec = tab.section("steer_vector: the direction added (one value per dimension)", "", rows=1, cols=lay.C,
                      positions=False)
    ws.write(sec.r1, 2, "vector", S.LABEL)
    vector = tab.define("steer_vector", ws.block(sec.r1, sec.c1, (1, lay.C), np.asarray(vec, dtype=np.float64).reshape(1, -1), S.NUM))
    labels = book["tokens_text"]
    sec = tab.section("steer_mask: 1 where the vector is added", "=IF(OR(steer_positions=0, position<steer_positions), 1, 0)",
                      rows=lay.N, cols=1, col_labels=["mask"], row_labels=labels)
    for i in range(lay.N):
        ws.formula(sec.r1 + i, sec.c1, f"=IF(OR(steer_positions=0,$A{sec.r1 + i}<steer_positions),1,0)", S.INT)
    mask = tab.define("steer_mask", sec)
    formula = f"=IF(steer_on,steer_coef,0)*{vector.ref}*{mask.ref}"
    sec = tab.section("steer_add: what block steer_layer adds to its input", formula, rows=lay.N, cols=lay.C,
                      row_labels=labels)
    tab.define("steer_add", ws.array(sec, formula, S.NUM))

    return tab
