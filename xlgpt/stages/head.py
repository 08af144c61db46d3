"""After the last block: ln_f [N, C] -> the last real token's vector [1, C] -> logits [V] -> probabilities -> prediction."""
from __future__ import annotations

from ..contract import T
from ..layout import LM_HEAD, LN_F, PREDICTION, Layout, S, Tab
from ..xlsx.book import BarChart, ColorScale, Range, col_letter
from .common import diverging, layer_norm, occurrence, top_id


def final_norm(book, lay: Layout, t: dict, x: Range) -> Range:
    tab = Tab(book, LN_F, N=lay.N, C=lay.C, last=lay.L - 1)
    return layer_norm(tab, t, x, T.ln_f_w(), T.ln_f_b(), (T.ln_f(), T.ln_f_mean(), T.ln_f_var()),
                      "ln_f: normalised residual stream", book[T.tokens_text()], lay.cfg.layer_norm_epsilon)


def lm_head(book, lay: Layout, t: dict, vocab_texts: list[str]) -> Tab:
    tab = Tab(book, LM_HEAD, V=lay.V, C=lay.C)
    ws = tab.ws
    formula = f"=MMULT(TRANSPOSE(IF({T.positions()}={T.n_tokens()}-1,1,0)),{T.ln_f()})"
    sec = tab.section("lm_head_x: the last real token's row of ln_f", formula, rows=1, cols=lay.C, positions=False)
    ws.write(sec.r1, 2, "last token", S.LABEL)
    tab.define(T.lm_head_x(), diverging(tab, ws.array(sec, formula, S.NUM, value=t[T.lm_head_x()])))
    ws.style_range(sec, S.NUM)  # one row: its cells would otherwise take the probability column's format
    logits_f = f"=MMULT({T.wte()},TRANSPOSE({T.lm_head_x()}))"
    probs_f = f"=EXP({T.lm_head_logits()}-{T.lm_head_max()})/{T.lm_head_sum()}"
    stats = tab.section("softmax statistics", "max = MAX(logits);  sum = SUM(EXP(logits - max))", rows=1, cols=2,
                        col_labels=["max", "sum of exp"], positions=False)
    ws.formula(stats.r1, stats.c1, f"=MAX({T.lm_head_logits()})", S.NUM, value=t[T.lm_head_max()])
    tab.define(T.lm_head_max(), stats.cell(0, 0))
    tab.define(T.lm_head_sum(), ws.array(stats.cell(0, 1), f"=SUM(EXP({T.lm_head_logits()}-{T.lm_head_max()}))",
                                         S.NUM, value=t[T.lm_head_sum()]))
    sec = tab.section("logits and probabilities, one row per vocabulary entry",
                      f"logit {logits_f}    probability {probs_f}", rows=lay.V, cols=2,
                      col_labels=["logit", "probability"], row_texts=vocab_texts)
    tab.define(T.lm_head_logits(), ws.array(sec.cols(0), logits_f, S.NUM, value=t[T.lm_head_logits()]))
    tab.define(T.prediction_probs(), ws.array(sec.cols(1), probs_f, S.PROB, value=t[T.prediction_probs()]))
    ws.color_scales.append(ColorScale(sec.cols(1), colors=("FFFFFF", "63BE7B"), points=("num:0", "num:1")))
    ws.column_style(sec.c1 + 1, S.PROB)
    ws.width(3, 12, 4)
    return tab


def prediction(book, lay: Layout, t: dict, token_text) -> Tab:
    """token_text(id_ref) -> formula text showing that token as text; token_text.text(id) is what it shows."""
    tab = Tab(book, PREDICTION, V=lay.V, K=lay.top_k)
    ws, r = tab.ws, tab.row
    nid_value = int(t[T.next_token_id()][0, 0])
    top_ids = [int(v) for v in t[T.top_ids()][:, 0]]
    ws.write(r, 2, "Next token id", S.KEY)
    nid = tab.define(T.next_token_id(), ws.formula(
        r, 3, f"=MATCH({T.lm_head_max()},{T.lm_head_logits()},0)-1", S.INT, value=nid_value))
    ws.write(r + 1, 2, "Next token", S.KEY)
    tab.row = r + 3
    k = lay.top_k
    sec = tab.section(f"the {k} most likely next tokens", "ranked by logit; ties listed in id order",
                      rows=k, cols=4, col_labels=["logit", "id", "probability", "token"], positions=False)
    texts = [f"{token_text(nid.ref)}"] + [token_text(sec.cell(i, 1).local(False)) for i in range(k)]
    block = getattr(token_text, "block", None)
    if block is not None:  # the live tokenizer decodes these ids in formulas, in columns right of the chart
        cells = block(tab, [nid] + [sec.cell(i, 1) for i in range(k)], labels=["next"] + [str(i + 1) for i in range(k)],
                      col0=19, title="decoding the predicted tokens", ids=[nid_value] + top_ids)
        texts = [c.local(False) for c in cells]
    status = T.status()
    ws.formula(r + 1, 3, f'=IF({status}<>"",{status},{texts[0]})', S.BIG, value=token_text.text(nid_value))
    tab.define(T.next_token(), Range(PREDICTION, r + 1, 3, r + 1, 3))
    logits = T.lm_head_logits()
    for i in range(k):
        rr = sec.r1 + i
        ws.write(rr, 2, i + 1, S.LABEL)
        lg, idc = (f"{col_letter(sec.c1 + j)}{rr}" for j in range(2))
        # every LARGE or MATCH reads all V logits: rank 1 reuses the max and the predicted id
        ws.formula(rr, sec.c1, f"=LARGE({logits},{i + 1})" if i else f"={T.lm_head_max()}", S.NUM,
                   value=t[T.top_logits()][i, 0])
        first = f"{col_letter(sec.c1)}{sec.r1}"
        if i:
            ws.array(Range(PREDICTION, rr, sec.c1 + 1, rr, sec.c1 + 1), top_id(logits, lg, occurrence(first, lg)),
                     S.INT, value=top_ids[i])
        else:
            ws.formula(rr, sec.c1 + 1, f"={T.next_token_id()}", S.INT, value=top_ids[i])
        # softmax of this logit, as prediction_probs computes it (reading one cell of an array formula by
        # INDEX can see a stale value in IronCalc, which does not track that dependency)
        ws.formula(rr, sec.c1 + 2, f"=EXP({lg}-{T.lm_head_max()})/{T.lm_head_sum()}", S.PROB,
                   value=t[T.top_probs()][i, 0])
        ws.formula(rr, sec.c1 + 3, f"={texts[i + 1]}", S.TEXT, value=token_text.text(top_ids[i]))
    tab.define(T.top_logits(), sec.cols(0))
    tab.define(T.top_ids(), sec.cols(1))
    tab.define(T.top_probs(), sec.cols(2))
    tab.define(T.top_tokens(), sec.cols(3))
    ws.charts.append(BarChart(f"next-token probabilities, top {k}", categories=sec.cols(3), values=sec.cols(2),
                              anchor=(sec.r1 - 2, 8), size=(8, max(12, k + 3)), y_title="probability"))
    ws.width(3, 12, 5)
    ws.width(6, 24)
    return tab
