"""One transformer block, laid out like reference.transformer_block:

  resid_pre [N, C] -> ln_1 -> qkv [N, 3C] -> per head h: scores [N, N] -> attention weights [N, N] -> z_h [N, D]
  -> z [N, C] -> attn_out [N, C] -> resid_mid -> ln_2 -> mlp_fc [N, 4C] -> mlp_gelu -> mlp_out [N, C] -> resid_post
"""
from __future__ import annotations

from ..layout import Layout, S, Tab, block_sheet
from ..xlsx.book import ColorScale, Range
from .common import diverging, layer_norm


def transformer_block(book, lay: Layout, i: int, x: Range) -> Range:
    C, N, H, D = lay.C, lay.N, lay.H, lay.D
    tab = Tab(book, block_sheet(i), "block", i=i, N=N, C=C, H=H, D=D, F=4 * C)
    ws, labels, b, p = tab.ws, book["tokens_text"], f"block_{i}", f"h{i}"

    # the residual stream entering the block; the steer tab adds its vector here when its layer is i
    formula = f"={x.ref}+IF(steer_layer={i},steer_add,0)"
    sec = tab.section("resid_pre: the residual stream entering the block", formula + "   (steering adds 0 unless switched on)",
                      rows=N, cols=C, row_labels=labels)
    resid_pre = tab.define(f"{b}_resid_pre", diverging(tab, ws.array(sec, formula, S.NUM)))

    ln_1 = layer_norm(tab, resid_pre, f"{p}_ln_1_w", f"{p}_ln_1_b", f"{b}_ln_1", "ln_1: layer norm before attention",
                      labels, lay.cfg.layer_norm_epsilon)

    formula = f"=MMULT({ln_1.ref},{p}_attn_c_attn_w)+{p}_attn_c_attn_b"
    qkv_labels = [f"{m}{j}" for m in "qkv" for j in range(C)]
    sec = tab.section("qkv: queries, keys and values for every head", formula, rows=N, cols=3 * C,
                      col_labels=qkv_labels, row_labels=labels)
    qkv = tab.define(f"{b}_qkv", diverging(tab, ws.array(sec, formula, S.NUM)))
    for m, name in enumerate("qkv"):
        tab.define(f"{b}_{name}", qkv.cols(m * C, C))
        for h in range(H):
            tab.define(f"{b}_{name}_h{h}", qkv.cols(m * C + h * D, D))

    keys = book["tokens_text"]
    z_parts = []
    for h in range(H):
        # scores [N, N] with each row's max and sum (the softmax's pieces) to their right, then the weights below
        f_scores = f"=MMULT({b}_q_h{h},TRANSPOSE({b}_k_h{h}))/SQRT({D})"
        sec = tab.section(f"head {h}: attention scores, query row . key column / SQRT({D})", f_scores,
                          rows=N, cols=N + 3, col_labels=[], row_labels=labels)
        hdr = sec.r1 - 1
        for j in range(N):
            ws.formula(hdr, sec.c1 + j, f"={keys.cell(j).abs}", S.INDEX)
        scores = sec.cols(0, N)
        mx, sm = sec.cols(N + 1), sec.cols(N + 2)
        ws.write(hdr - 1, mx.c1, "softmax pieces: the row's max and SUM(EXP(score - max)) over keys j <= i", S.FORMULA)
        ws.write(hdr, mx.c1, "max", S.INDEX)
        ws.write(hdr, sm.c1, "sum", S.INDEX)
        scores = tab.define(f"{b}_scores_h{h}", ws.array(scores, f_scores, S.NUM))
        for r in range(N):
            row = scores.rows(r).local()
            pos = f"$A{sec.r1 + r}"
            ws.array(mx.cell(r), f"=MAX(IF(TRANSPOSE(positions)<={pos},{row}))", S.NUM)
            ws.array(sm.cell(r), f"=SUM(IF(TRANSPOSE(positions)<={pos},EXP({row}-{mx.cell(r).local()})))", S.NUM)
        mx = tab.define(f"{b}_attn_max_h{h}", mx)
        sm = tab.define(f"{b}_attn_sum_h{h}", sm)
        f_w = f"=IF(TRANSPOSE(positions)<=positions,EXP({scores.ref}-{mx.ref}),0)/{sm.ref}"
        sec = tab.section(f"head {h}: attention weights, the softmax of each row over keys j <= i (a token sees only "
                          "itself and earlier ones: the causal mask); each row sums to 1", f_w,
                          rows=N, cols=N, col_labels=keys, row_labels=labels)
        weights = tab.define(f"{b}_attn_h{h}", ws.array(sec, f_w, S.NUM))
        ws.color_scales.append(_attention_scale(weights))
        z_parts.append(weights)

    sec = tab.section("z: each head's weighted sum of values, heads side by side",
                      f"=MMULT({b}_attn_h0,{b}_v_h0) in columns h0.*, and the same for every head",
                      rows=N, cols=C, col_labels=[f"h{j // D}.{j % D}" for j in range(C)], row_labels=labels)
    for h in range(H):
        ws.array(sec.cols(h * D, D), f"=MMULT({b}_attn_h{h},{b}_v_h{h})", S.NUM)
        tab.define(f"{b}_z_h{h}", sec.cols(h * D, D))
    z = tab.define(f"{b}_z", diverging(tab, sec))

    formula = f"=MMULT({z.ref},{p}_attn_c_proj_w)+{p}_attn_c_proj_b"
    attn_out = tab.define(f"{b}_attn_out", diverging(tab, ws.array(
        tab.section("attn_out: heads mixed by c_proj", formula, rows=N, cols=C, row_labels=labels), formula, S.NUM)))

    formula = f"={resid_pre.ref}+{attn_out.ref}"
    resid_mid = tab.define(f"{b}_resid_mid", diverging(tab, ws.array(
        tab.section("resid_mid: residual stream after attention", formula, rows=N, cols=C, row_labels=labels),
        formula, S.NUM)))

    ln_2 = layer_norm(tab, resid_mid, f"{p}_ln_2_w", f"{p}_ln_2_b", f"{b}_ln_2", "ln_2: layer norm before the MLP",
                      labels, lay.cfg.layer_norm_epsilon)

    formula = f"=MMULT({ln_2.ref},{p}_mlp_c_fc_w)+{p}_mlp_c_fc_b"
    fc = tab.define(f"{b}_mlp_fc", diverging(tab, ws.array(
        tab.section("mlp_fc: expand to 4 x n_embd", formula, rows=N, cols=4 * C, row_labels=labels), formula, S.NUM)))

    x3 = fc.ref
    formula = f"=0.5*{x3}*(1+TANH(SQRT(2/PI())*({x3}+0.044715*{x3}^3)))"
    gelu = tab.define(f"{b}_mlp_gelu", diverging(tab, ws.array(
        tab.section("mlp_gelu: GELU (tanh form)", formula, rows=N, cols=4 * C, row_labels=labels), formula, S.NUM)))

    formula = f"=MMULT({gelu.ref},{p}_mlp_c_proj_w)+{p}_mlp_c_proj_b"
    mlp_out = tab.define(f"{b}_mlp_out", diverging(tab, ws.array(
        tab.section("mlp_out: project back to n_embd", formula, rows=N, cols=C, row_labels=labels), formula, S.NUM)))

    formula = f"={resid_mid.ref}+{mlp_out.ref}"
    resid_post = tab.define(f"{b}_resid_post", diverging(tab, ws.array(
        tab.section("resid_post: residual stream leaving the block", formula, rows=N, cols=C, row_labels=labels),
        formula, S.NUM)))
    ws.width(3, 9, 3 + 4 * C)
    return resid_post


def _attention_scale(rng: Range) -> ColorScale:
    return ColorScale(rng, colors=("FFFFFF", "F8696B"), points=("num:0", "num:1"))
