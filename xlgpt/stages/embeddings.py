"""x = wte[id] + wpe[position]    [N] ids -> [N, C]

Written as one-hot rows times the embedding matrix: MMULT(IF(id = vocab ids, 1, 0), wte) picks row `id`
of wte for every token at once (one formula for the whole [N, C] block; a per-cell INDEX into a 38M-cell
wte is also slow in the `formulas` engine)."""
from __future__ import annotations

from ..layout import EMBEDDINGS, Layout, S, Tab
from .common import diverging


def embeddings(book, lay: Layout) -> Tab:
    tab = Tab(book, EMBEDDINGS, N=lay.N, C=lay.C, V=lay.V)
    ws, labels = tab.ws, book["tokens_text"]
    formula = "=MMULT(IF(tokens_ids=TRANSPOSE(vocab_ids),1,0),wte)"
    tok = tab.section("token embedding: row id of wte (a one-hot row times wte)", formula, rows=lay.N, cols=lay.C,
                      row_labels=labels)
    tab.define("embeddings_wte", diverging(tab, ws.array(tok, formula, S.NUM)))
    formula = "=MMULT(IF(positions=TRANSPOSE(wpe_positions),1,0),wpe)"
    pos = tab.section("position embedding: row position of wpe", formula, rows=lay.N, cols=lay.C, row_labels=labels)
    tab.define("embeddings_wpe", diverging(tab, ws.array(pos, formula, S.NUM)))
    formula = "=embeddings_wte+embeddings_wpe"
    out = tab.section("x = token embedding + position embedding (enters block 0)", formula,
                      rows=lay.N, cols=lay.C, row_labels=labels)
    tab.define("embeddings_out", diverging(tab, ws.array(out, formula, S.NUM)))
    return tab
