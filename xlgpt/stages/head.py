"""After the last block: ln_f [N, C] -> the last real token's vector [1, C] -> logits [V] -> probabilities -> prediction."""
from __future__ import annotations

from ..contract import T
from ..layout import LM_HEAD, LN_F, PREDICTION, Layout, S, Tab
from ..xlsx.book import BarChart, ColorScale, Range
from .common import diverging, last_token, layer_norm, softmax_stats, top_k
from .options import BuildOptions
from .sampling import sampling
from .sampling import weights as sampling_weights


def final_norm(book, lay: Layout, t: dict, x: Range) -> Range:
    tab = Tab(book, LN_F, N=lay.N, C=lay.C, last=lay.L - 1)
    return layer_norm(tab, t, x, T.ln_f_w(), T.ln_f_b(), (T.ln_f(), T.ln_f_mean(), T.ln_f_var()),
                      "ln_f: normalised residual stream", book[T.tokens_text()], lay.cfg.layer_norm_epsilon)


def lm_head(book, lay: Layout, t: dict, vocab_texts: list[str]) -> Tab:
    tab = Tab(book, LM_HEAD, V=lay.V, C=lay.C)
    ws = tab.ws
    formula = f"={last_token(T.ln_f())}"
    sec = tab.section("lm_head_x: the last real token's row of ln_f", formula, rows=1, cols=lay.C, positions=False)
    ws.write(sec.r1, 2, "last token", S.LABEL)
    tab.define(T.lm_head_x(), diverging(tab, ws.array(sec, formula, S.NUM, value=t[T.lm_head_x()])))
    ws.style_range(sec, S.NUM)  # one row: its cells would otherwise take the probability column's format
    logits_f = f"=MMULT({T.wte()},TRANSPOSE({T.lm_head_x()}))"
    probs_f = f"=EXP({T.lm_head_logits()}-{T.lm_head_max()})/{T.lm_head_sum()}"
    stats = tab.section("softmax statistics", "max = MAX(logits);  sum = SUM(EXP(logits - max))", rows=1, cols=2,
                        col_labels=["max", "sum of exp"], positions=False)
    softmax_stats(ws, T.lm_head_logits(), stats.cell(0, 0), stats.cell(0, 1), t[T.lm_head_max()],
                  t[T.lm_head_sum()], mx_ref=T.lm_head_max())
    tab.define(T.lm_head_max(), stats.cell(0, 0))
    tab.define(T.lm_head_sum(), stats.cell(0, 1))
    sec = tab.section("logits and probabilities, one row per vocabulary entry",
                      f"logit {logits_f}    probability {probs_f}", rows=lay.V, cols=2,
                      col_labels=["logit", "probability"], row_texts=vocab_texts)
    tab.define(T.lm_head_logits(), ws.array(sec.cols(0), logits_f, S.NUM, value=t[T.lm_head_logits()]))
    tab.define(T.prediction_probs(), ws.array(sec.cols(1), probs_f, S.PROB, value=t[T.prediction_probs()]))
    ws.color_scales.append(ColorScale(sec.cols(1), colors=("FFFFFF", "63BE7B"), points=("num:0", "num:1")))
    ws.column_style(sec.c1 + 1, S.PROB)
    # the sampler's weight of every token (prediction tab: temperature, top-k, the draw), one column further right
    w = Range(LM_HEAD, sec.r1, sec.c1 + 3, sec.r2, sec.c1 + 3)
    ws.write(w.r1 - 1, w.c1, "sampling weight", S.INDEX)
    tab.define(T.sample_w(), ws.array(w, "=" + sampling_weights(), S.NUM, value=t[T.sample_w()]))
    ws.column_style(w.c1, S.NUM)
    ws.width(3, 12, 4)
    ws.width(w.c1, 14)
    return tab


def prediction(book, lay: Layout, t: dict, token_text, opts: BuildOptions) -> Tab:
    """The prediction tab: the argmax, the top k with a chart, then the sampler (sampling.py).
    token_text(id_ref) -> formula text showing that token as text; token_text.text(id) is what it shows."""
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
    rows = [tuple(sec.cell(i, j) for j in range(4)) for i in range(k)]
    for i in range(k):
        ws.write(sec.r1 + i, 2, i + 1, S.LABEL)
    top_k(ws, T.lm_head_logits(), T.lm_head_max(), T.lm_head_sum(), rows, texts[1:], top_ids,
          t[T.top_logits()][:, 0], t[T.top_probs()][:, 0], token_text, top1_id=T.next_token_id())
    tab.define(T.top_logits(), sec.cols(0))
    tab.define(T.top_ids(), sec.cols(1))
    tab.define(T.top_probs(), sec.cols(2))
    tab.define(T.top_tokens(), sec.cols(3))
    ws.charts.append(BarChart(f"next-token probabilities, top {k}", categories=sec.cols(3), values=sec.cols(2),
                              anchor=(sec.r1 - 2, 8), size=(8, max(12, k + 3)), y_title="probability"))
    ws.width(3, 12, 5)
    ws.width(6, 24)
    sampling(book, lay, t, tab, opts, token_text)
    return tab
