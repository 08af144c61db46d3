"""One transformer block, laid out like reference.transformer_block:

  resid_pre [N, C] -> ln_1 -> qkv [N, 3C] -> per head h: scores [N, N] -> attention weights [N, N] -> z_h [N, D]
  -> z [N, C] -> attn_out [N, C] -> resid_mid -> ln_2 -> mlp_fc [N, 4C] -> mlp_gelu -> mlp_out [N, C] -> resid_post

Each function mirrors the reference's of the same name; `t` is the reference's dict (the values every formula
must compute), names come from the contract.
"""
from __future__ import annotations

from ..contract import T
from ..layout import Layout, S, Tab, block_sheet
from ..xlsx.book import ColorScale, Range, Same
from .common import diverging, layer_norm, section


def transformer_block(book, lay: Layout, t: dict, l: int, x: Range) -> Range:  # noqa: E741
    tab = Tab(book, block_sheet(l), "block", i=l, N=lay.N, C=lay.C, H=lay.H, D=lay.D, F=4 * lay.C)
    labels = book[T.tokens_text()]
    # the residual stream entering the block; the steer tab adds its vector here when its layer is l
    formula = f"={x.ref}+IF({T.steer_layer()}={l},{T.steer_add()},0)"
    resid_pre = tab.define(T.block_resid_pre(l), diverging(tab, section(
        tab, "resid_pre: the residual stream entering the block", formula, t[T.block_resid_pre(l)], labels,
        explain=formula + "   (steering adds 0 unless switched on)")))
    ln_1 = layer_norm(tab, t, resid_pre, T.h_ln_1_w(l), T.h_ln_1_b(l),
                      (T.block_ln_1(l), T.block_ln_1_mean(l), T.block_ln_1_var(l)),
                      "ln_1: layer norm before attention", labels, lay.cfg.layer_norm_epsilon)
    attn_out = mha(book, lay, tab, t, l, ln_1)
    formula = f"={resid_pre.ref}+{attn_out.ref}"
    resid_mid = tab.define(T.block_resid_mid(l), diverging(tab, section(
        tab, "resid_mid: residual stream after attention", formula, t[T.block_resid_mid(l)], labels)))
    ln_2 = layer_norm(tab, t, resid_mid, T.h_ln_2_w(l), T.h_ln_2_b(l),
                      (T.block_ln_2(l), T.block_ln_2_mean(l), T.block_ln_2_var(l)),
                      "ln_2: layer norm before the MLP", labels, lay.cfg.layer_norm_epsilon)
    mlp_out = mlp(tab, t, l, ln_2, labels)
    formula = f"={resid_mid.ref}+{mlp_out.ref}"
    resid_post = tab.define(T.block_resid_post(l), diverging(tab, section(
        tab, "resid_post: residual stream leaving the block", formula, t[T.block_resid_post(l)], labels)))
    tab.ws.width(3, 9, 3 + 4 * lay.C)
    return resid_post


def linear(tab: Tab, t: dict, name: str, title: str, x: Range, w: str, b: str, labels: Range, **kw) -> Range:
    formula = f"=MMULT({x.ref},{w})+{b}"
    return tab.define(name, diverging(tab, section(tab, title, formula, t[name], labels, **kw)))


def mha(book, lay: Layout, tab: Tab, t: dict, l: int, x: Range) -> Range:  # noqa: E741
    C, H, D = lay.C, lay.H, lay.D
    labels = book[T.tokens_text()]
    qkv = linear(tab, t, T.block_qkv(l), "qkv: queries, keys and values for every head", x,
                 T.h_attn_c_attn_w(l), T.h_attn_c_attn_b(l), labels,
                 col_labels=[f"{m}{j}" for m in "qkv" for j in range(C)])
    for m, (whole, head) in enumerate([(T.block_q, T.block_q_h), (T.block_k, T.block_k_h), (T.block_v, T.block_v_h)]):
        tab.define(whole(l), qkv.cols(m * C, C))
        for h in range(H):
            tab.define(head(l, h), qkv.cols(m * C + h * D, D))
    weights = [attention(tab, t, l, h, D, labels) for h in range(H)]
    sec = tab.section("z: each head's weighted sum of values, heads side by side",
                      f"=MMULT({T.block_attn_h(l, 0)},{T.block_v_h(l, 0)}) in columns h0.*, and the same for every head",
                      rows=lay.N, cols=C, col_labels=[f"h{j // D}.{j % D}" for j in range(C)], row_labels=labels)
    for h, w in enumerate(weights):
        tab.ws.array(sec.cols(h * D, D), f"=MMULT({w.ref},{T.block_v_h(l, h)})", S.NUM, value=t[T.block_z_h(l, h)])
        tab.define(T.block_z_h(l, h), sec.cols(h * D, D))
    z = tab.define(T.block_z(l), diverging(tab, sec))
    return linear(tab, t, T.block_attn_out(l), "attn_out: heads mixed by c_proj", z, T.h_attn_c_proj_w(l),
                  T.h_attn_c_proj_b(l), labels)


def attention(tab: Tab, t: dict, l: int, h: int, D: int, labels: Range) -> Range:  # noqa: E741
    """scores [N, N] with the softmax's pieces to their right (the head's max, each row's sum), then the weights.

    The max is ONE number for the whole head, not one per row: subtracting any constant from a row leaves its
    softmax unchanged, and the head's largest score keeps EXP from overflowing. So the head's softmax statistics
    are two formulas (a MAX, and the row sums as one MMULT with a column of ones), not 2N."""
    ws = tab.ws
    N = labels.shape[0]
    pos = T.positions()
    visible = f"TRANSPOSE({pos})<={pos}"  # key j <= query i: the causal mask, [N, N]
    scores_name, max_name, sum_name = T.block_scores_h(l, h), T.block_attn_max_h(l, h), T.block_attn_sum_h(l, h)
    f_scores = f"=MMULT({T.block_q_h(l, h)},TRANSPOSE({T.block_k_h(l, h)}))/SQRT({D})"
    sec = tab.section(f"head {h}: attention scores, query row . key column / SQRT({D})", f_scores,
                      rows=N, cols=N + 3, col_labels=[], row_labels=labels)
    hdr = sec.r1 - 1
    for j in range(N):
        src = labels.cell(j)
        ws.formula(hdr, sec.c1 + j, f"={src.abs}", S.INDEX, value=Same(src))
    scores, mx, sm = sec.cols(0, N), sec.cols(N + 1).cell(0), sec.cols(N + 2)
    ws.write(hdr - 1, mx.c1, "softmax pieces: the head's largest score (one number: a softmax ignores a constant "
             "subtracted from its row), and each row's SUM(EXP(score - max)) over keys j <= i", S.FORMULA)
    ws.write(hdr, mx.c1, "max", S.INDEX)
    ws.write(hdr, sm.c1, "sum", S.INDEX)
    scores = tab.define(scores_name, ws.array(scores, f_scores, S.NUM, value=t[scores_name]))
    mx = tab.define(max_name, ws.formula(mx.r1, mx.c1, f"=MAX({scores.ref})", S.NUM, value=t[max_name][0, 0]))
    ones = f"IF({pos}>=0,1,0)"  # a column of N ones: MMULT by it sums each row
    sm = tab.define(sum_name, ws.array(sm, f"=MMULT(IF({visible},EXP({scores.ref}-{mx.ref}),0),{ones})", S.NUM,
                                       value=t[sum_name]))
    f_w = f"=IF({visible},EXP({scores.ref}-{mx.ref}),0)/{sm.ref}"
    sec = tab.section(f"head {h}: attention weights, the softmax of each row over keys j <= i (a token sees only "
                      "itself and earlier ones: the causal mask); each row sums to 1", f_w,
                      rows=N, cols=N, col_labels=labels, row_labels=labels)
    weights = tab.define(T.block_attn_h(l, h), ws.array(sec, f_w, S.NUM, value=t[T.block_attn_h(l, h)]))
    ws.color_scales.append(attention_scale(weights))
    return weights


def mlp(tab: Tab, t: dict, l: int, x: Range, labels: Range) -> Range:  # noqa: E741
    fc = linear(tab, t, T.block_mlp_fc(l), "mlp_fc: expand to 4 x n_embd", x, T.h_mlp_c_fc_w(l), T.h_mlp_c_fc_b(l),
                labels)
    x3 = fc.ref
    formula = f"=0.5*{x3}*(1+TANH(SQRT(2/PI())*({x3}+0.044715*{x3}^3)))"
    gelu = tab.define(T.block_mlp_gelu(l), diverging(tab, section(
        tab, "mlp_gelu: GELU (tanh form)", formula, t[T.block_mlp_gelu(l)], labels)))
    return linear(tab, t, T.block_mlp_out(l), "mlp_out: project back to n_embd", gelu, T.h_mlp_c_proj_w(l),
                  T.h_mlp_c_proj_b(l), labels)


def attention_scale(rng: Range) -> ColorScale:
    return ColorScale(rng, colors=("FFFFFF", "F8696B"), points=("num:0", "num:1"))

