"""After the last block: ln_f [N, C] -> the last real token's vector [1, C] -> logits [V] -> probabilities -> prediction."""
from __future__ import annotations

from ..layout import LM_HEAD, LN_F, PREDICTION, Layout, S, Tab
from ..xlsx.book import BarChart, ColorScale, Range, col_letter
from .common import diverging, layer_norm, top_id


def final_norm(book, lay: Layout, x: Range) -> Range:
    tab = Tab(book, LN_F, N=lay.N, C=lay.C, last=lay.L - 1)
    return layer_norm(tab, x, "ln_f_w", "ln_f_b", "ln_f", "ln_f: normalised residual stream", book["tokens_text"],
                      lay.cfg.layer_norm_epsilon)


def lm_head(book, lay: Layout, vocab_texts: list[str]) -> Tab:
    tab = Tab(book, LM_HEAD, V=lay.V, C=lay.C)
    ws = tab.ws
    formula = "=MMULT(TRANSPOSE(IF(positions=n_tokens-1,1,0)),ln_f)"
    sec = tab.section("lm_head_x: the last real token's row of ln_f", formula, rows=1, cols=lay.C, positions=False)
    ws.write(sec.r1, 2, "last token", S.LABEL)
    tab.define("lm_head_x", diverging(tab, ws.array(sec, formula, S.NUM)))
    ws.style_range(sec, S.NUM)  # one row: its cells would otherwise take the probability column's format
    logits_f = "=MMULT(wte,TRANSPOSE(lm_head_x))"
    probs_f = "=EXP(lm_head_logits-lm_head_max)/lm_head_sum"
    stats = tab.section("softmax statistics", "max = MAX(logits);  sum = SUM(EXP(logits - max))", rows=1, cols=2,
                        col_labels=["max", "sum of exp"], positions=False)
    ws.formula(stats.r1, stats.c1, "=MAX(lm_head_logits)", S.NUM)
    tab.define("lm_head_max", stats.cell(0, 0))
    tab.define("lm_head_sum", ws.array(stats.cell(0, 1), "=SUM(EXP(lm_head_logits-lm_head_max))", S.NUM))
    sec = tab.section("logits and probabilities, one row per vocabulary entry",
                      f"logit {logits_f}    probability {probs_f}", rows=lay.V, cols=2,
                      col_labels=["logit", "probability"], row_texts=vocab_texts)
    tab.define("lm_head_logits", ws.array(sec.cols(0), logits_f, S.NUM))
    tab.define("prediction_probs", ws.array(sec.cols(1), probs_f, S.PROB))
    ws.color_scales.append(ColorScale(sec.cols(1), colors=("FFFFFF", "63BE7B"), points=("num:0", "num:1")))
    ws.column_style(sec.c1 + 1, S.PROB)
    ws.width(3, 12, 4)
    return tab


def prediction(book, lay: Layout, token_text_formula, ids: list[int] | None = None) -> Tab:
    """token_text_formula(id_ref) -> formula text showing that token as text. ids: the next token's id and the
    top-k ids the workbook computes (the decoding's expected values; None: not given)."""
    tab = Tab(book, PREDICTION, V=lay.V, K=lay.top_k)
    ws, r = tab.ws, tab.row
    ws.write(r, 2, "Next token id", S.KEY)
    nid = tab.define("next_token_id", ws.formula(r, 3, "=MATCH(MAX(lm_head_logits),lm_head_logits,0)-1", S.INT))
    ws.write(r + 1, 2, "Next token", S.KEY)
    tab.define("next_token", ws.formula(r + 1, 3, f'=IF(status<>"",status,{token_text_formula(nid.ref)})', S.BIG))
    tab.row = r + 3
    k = lay.top_k
    sec = tab.section(f"the {k} most likely next tokens", "ranked by logit; ties listed in id order",
                      rows=k, cols=4, col_labels=["logit", "id", "probability", "token"], positions=False)
    for i in range(k):
        rr = sec.r1 + i
        ws.write(rr, 2, i + 1, S.LABEL)
        lg, idc = (f"{col_letter(sec.c1 + j)}{rr}" for j in range(2))
        ws.formula(rr, sec.c1, f"=LARGE(lm_head_logits,{i + 1})", S.NUM)
        first = f"{col_letter(sec.c1)}{sec.r1}"
        occurrence = f"COUNTIF({first}:{lg},{lg})" if i else "1"
        ws.array(Range(PREDICTION, rr, sec.c1 + 1, rr, sec.c1 + 1), top_id("lm_head_logits", lg, occurrence), S.INT)
        # softmax of this logit, as prediction_probs computes it (reading one cell of an array formula by
        # INDEX can see a stale value in IronCalc, which does not track that dependency)
        ws.formula(rr, sec.c1 + 2, f"=EXP({lg}-lm_head_max)/lm_head_sum", S.PROB)
        ws.formula(rr, sec.c1 + 3, f"={token_text_formula(idc)}", S.TEXT)
    block = getattr(token_text_formula, "block", None)
    if block is not None:  # the live tokenizer decodes these ids in formulas, in columns right of the chart
        texts = block(tab, [nid] + [sec.cell(i, 1) for i in range(k)], labels=["next"] + [str(i + 1) for i in range(k)],
                      col0=19, title="decoding the predicted tokens", ids=ids)
        ws.formula(r + 1, 3, f'=IF(status<>"",status,{texts[0].local(False)})', S.BIG)
        for i in range(k):
            ws.formula(sec.r1 + i, sec.c1 + 3, f"={texts[i + 1].local(False)}", S.TEXT)
    tab.define("top_logits", sec.cols(0))
    tab.define("top_ids", sec.cols(1))
    tab.define("top_probs", sec.cols(2))
    tab.define("top_tokens", sec.cols(3))
    ws.charts.append(BarChart(f"next-token probabilities, top {k}", categories=sec.cols(3), values=sec.cols(2),
                              anchor=(sec.r1 - 2, 8), size=(8, max(12, k + 3)), y_title="probability"))
    ws.width(3, 12, 5)
    ws.width(6, 24)
    return tab
