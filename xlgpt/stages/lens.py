"""The logit lens: what would the model predict if it stopped after block l?

For the residual stream entering each block (TransformerLens blocks.l.hook_resid_pre, after steering) and the
final stream (the last block's resid_post), at the last real token:

  lens_x [L+1, C] -> ln_f with each row's OWN mean and variance -> lens_ln [L+1, C]
  -> lens_logits [V, L+1] = MMULT(wte, TRANSPOSE(lens_ln))   (one MMULT for every layer; the LM head is tied to wte)
  -> lens_probs [V, L+1] = softmax down each column
  -> per layer: the top-k tokens (ties to the lower id) and, for one target token, its rank and probability.

The last column equals the real prediction (the same row through the same ln_f).
"""
from __future__ import annotations

from ..contract import T
from ..layout import LENS, Layout, S, Tab
from ..xlsx.book import ColorScale, Range
from .common import diverging, here, last_token, layer_norm, softmax_stats, top_k

LN_CONVENTION = ("LayerNorm convention: every layer's vector is normalised with its OWN mean and variance, then "
                 "scaled by ln_f_w and shifted by ln_f_b (nostalgebraist's logit lens; TransformerLens "
                 "apply_ln_to_stack(..., recompute_ln=True)). TransformerLens' accumulated_resid(apply_ln=True) "
                 "instead reuses the final layer's scale.")


def layer_labels(n_layer: int) -> list[str]:
    return [f"into block {i}" for i in range(n_layer)] + [f"final (after block {n_layer - 1})"]


def lens_sources(n_layer: int) -> list[str]:
    """The defined names whose last real row each lens column reads."""
    return [T.block_resid_pre(i) for i in range(n_layer)] + [T.block_resid_post(n_layer - 1)]


def logit_lens(book, lay: Layout, t: dict, token_text, vocab_texts: list[str], typed_target: bool = False) -> Tab:
    """token_text(id_ref) -> formula text (without "=") showing that token as text; token_text.text(id) its text."""
    L, C, V, K = lay.L, lay.C, lay.V, lay.top_k
    n = L + 1
    tab = Tab(book, LENS, L=L, C=C, V=V, K=K, N=lay.N)
    ws, r = tab.ws, tab.row
    labels = layer_labels(L)

    ws.write(r, 2, LN_CONVENTION, S.NOTE)
    r += 2
    # ---- the target token: by default the prediction, a learner may type any id -----------------------
    ws.write(r, 2, "Target token id", S.KEY)
    target_id = int(t[T.lens_target()][0, 0])
    target = tab.define(T.lens_target(), ws.write(r, 3, target_id, S.INPUT) if typed_target else
                        ws.formula(r, 3, f"={T.next_token_id()}", S.INPUT, value=target_id))
    ws.write(r, 4, "type any token id over the formula (=next_token_id, the model's prediction, by default)", S.NOTE)
    ws.write(r + 1, 2, "Target token", S.KEY)
    ws.formula(r + 1, 3, f"={token_text(target.ref)}", S.BIG, value=token_text.text(target_id))
    tab.row = r + 3

    # ---- the target at every layer (columns = layers, like everything below) ---------------------------
    sec = tab.section("the target token at every layer", "rank 1 = the lens's top token; ties share the better rank",
                      rows=3, cols=n, col_labels=labels, positions=False)
    for i, lab in enumerate(["logit", "rank", "probability"]):
        ws.write(sec.r1 + i, 2, lab, S.LABEL)
    # lens_logits etc. are defined further down: formulas refer to names, resolved when the file is opened
    f_tprob = "=EXP(lens_target_logit-lens_max)/lens_sum"
    tab.define(T.lens_target_prob(), ws.array(sec.rows(2), f_tprob, S.PROB, value=t[T.lens_target_prob()]))
    # the logit (SUMIF picks the target's row: one value, exactly) and its RANK, per layer: native scans, one
    # formula a cell (RANK reading one cell of a multi-cell array would be an untracked dependency in IronCalc);
    # filled in below once the logits have an address
    tlogit_cells, rank_cells = sec.rows(0), sec.rows(1)
    tab.define(T.lens_target_logit(), tlogit_cells)
    tab.define(T.lens_target_rank(), rank_cells)
    ws.style_range(sec.rows(0), S.NUM)
    ws.style_range(sec.rows(1), S.INT)
    ws.style_range(sec.rows(2), S.PROB)
    ws.color_scales.append(ColorScale(sec.rows(2), colors=("FFFFFF", "63BE7B"), points=("num:0", "num:1")))
    ws.write(sec.r2 + 1, 3, "logit: SUMIF(vocab_ids, lens_target, the layer's column of lens_logits);  rank: RANK(logit, the "
             "layer's column of lens_logits), 1 + how many tokens have a larger logit;  probability: "
             "EXP(logit - max) / sum", S.FORMULA)
    tab.row = sec.r2 + 3

    # ---- top-k per layer: rank down, layers across ---------------------------------------------------------
    top_titles = [(f"the {K} most likely tokens at each layer", S.TEXT),
                  ("their probabilities", S.PROB), ("their ids", S.INT), ("their logits", S.NUM)]
    tops = []
    for title, style in top_titles:
        explain = {
            "their logits": "LARGE(column of lens_logits, rank); rank 1 is the column's max; the final column "
                            "repeats the prediction tab's table (the same row through the same ln_f)",
            "their ids": "the id with that logit (ties: the lower id first)",
            "their probabilities": "EXP(logit - max) / sum (the column's softmax)",
        }.get(title, "")
        sec = tab.section(title, explain, rows=K, cols=n, col_labels=labels, positions=False)
        for i in range(K):
            ws.write(sec.r1 + i, 2, i + 1, S.LABEL)
        tops.append(sec)
    text_sec, prob_sec, id_sec, logit_sec = tops

    # ---- the residual stream at the last real token, one row per layer --------------------------------------
    sec = tab.section("lens_x: the residual stream at the last real token, one row per layer",
                      "=" + last_token("block_l_resid_pre"), rows=n, cols=C,
                      positions=False, row_texts=labels)
    for i, src in enumerate(lens_sources(L)):
        ws.array(sec.rows(i), f"={last_token(src)}", S.NUM, value=t[T.lens_x()][i])
    lens_x = tab.define(T.lens_x(), diverging(tab, sec))
    row_labels = Range(LENS, sec.r1, 2, sec.r2, 2)
    layer_norm(tab, t, lens_x, T.ln_f_w(), T.ln_f_b(), (T.lens_ln(), T.lens_ln_mean(), T.lens_ln_var()),
               "lens_ln: ln_f applied to each row with its own statistics", row_labels, lay.cfg.layer_norm_epsilon)

    # ---- softmax statistics per column, then logits and probabilities --------------------------------------
    stats = tab.section("softmax statistics of each column", "max = MAX(column);  sum = SUM(EXP(column - max))",
                        rows=2, cols=n, col_labels=labels, positions=False)
    ws.write(stats.r1, 2, "max", S.LABEL)
    ws.write(stats.r1 + 1, 2, "sum of exp", S.LABEL)
    f_logits = "=MMULT(wte,TRANSPOSE(lens_ln))"
    f_probs = "=EXP(lens_logits-lens_max)/lens_sum"
    sec = tab.section("lens_logits | lens_probs: one row per vocabulary entry, one column per layer",
                      f"{f_logits}      {f_probs}", rows=V, cols=2 * n + 1,
                      col_labels=labels + [""] + labels, positions=False, row_texts=vocab_texts)
    logits = tab.define(T.lens_logits(), ws.array(sec.cols(0, n), f_logits, S.NUM, value=t[T.lens_logits()]))
    probs = tab.define(T.lens_probs(), ws.array(sec.cols(n + 1, n), f_probs, S.PROB, value=t[T.lens_probs()]))
    ws.column_style(probs.c1, S.PROB, probs.c2)
    for j in range(n):
        softmax_stats(ws, here(logits.cols(j), tab), stats.cell(0, j), stats.cell(1, j), t[T.lens_max()][0, j],
                      t[T.lens_sum()][0, j])
    tab.define(T.lens_max(), stats.rows(0))
    tab.define(T.lens_sum(), stats.rows(1))
    for v in range(V):  # column A: the token id (column B: its text)
        ws.write(sec.r1 + v, 1, v, S.POS)

    # ---- now the top-k formulas (they need the logits' address) ---------------------------------------------
    for j in range(n):
        col = here(logits.cols(j), tab)
        tl, rk = tlogit_cells.cell(0, j), rank_cells.cell(0, j)
        ws.formula(tl.r1, tl.c1, f"=SUMIF({T.vocab_ids()},{T.lens_target()},{col})", S.NUM,
                   value=t[T.lens_target_logit()][0, j])
        ws.formula(rk.r1, rk.c1, f"=RANK({tl.local(False)},{col})", S.INT, value=t[T.lens_target_rank()][0, j])
        rows = [(logit_sec.cell(i, j), id_sec.cell(i, j), prob_sec.cell(i, j), text_sec.cell(i, j)) for i in range(K)]
        final = j == n - 1  # the final layer is the real prediction: its top-k is the prediction tab's
        top_k(ws, col, here(stats.cell(0, j), tab), here(stats.cell(1, j), tab), rows,
              [token_text(idc.local(False)) for _, idc, _, _ in rows], t[T.lens_top_ids()][:, j],
              t[T.lens_top_logits()][:, j], t[T.lens_top_probs()][:, j], token_text,
              same_as=(book[T.top_logits()], book[T.top_ids()]) if final else None)
    ws.color_scales.append(ColorScale(prob_sec, colors=("FFFFFF", "63BE7B"), points=("num:0", "num:1")))
    tab.define(T.lens_top_tokens(), text_sec)
    tab.define(T.lens_top_probs(), prob_sec)
    tab.define(T.lens_top_ids(), id_sec)
    tab.define(T.lens_top_logits(), logit_sec)
    ws.width(3, 16, 3 + 2 * n)
    ws.width(2, 22)
    return tab
