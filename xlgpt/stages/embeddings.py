"""x = wte[id] + wpe[position]    [N] ids -> [N, C]

Small vocabularies: one-hot rows times the embedding matrix, MMULT(IF(id = vocab ids, 1, 0), wte), one formula
for the whole [N, C] block (a per-cell INDEX into a range costs the range's size in the `formulas` engine).
Large ones (GPT-2's 50,257 x 768): one INDEX per cell, because the one-hot MMULT would cost N x V x C
multiplications (0.6 G, seconds in IronCalc) on every recalculation; `formulas` cannot load such a workbook anyway.
"""
from __future__ import annotations

from ..layout import EMBEDDINGS, Layout, S, Tab
from ..xlsx.book import col_letter
from .common import diverging

ONE_HOT_LIMIT = 2_000_000  # wte cells up to which the one-hot MMULT is used
ONE_HOT = ("=MMULT(IF(tokens_ids=TRANSPOSE(vocab_ids),1,0),wte)",
           "a one-hot row (1 at the token's id) times wte: row id of wte, for every token at once")
INDEX = ("=INDEX(wte,id+1,j+1)", "row id + 1, column j + 1 of wte (id from the tokens tab, j the column number above)")


def embeddings(book, lay: Layout) -> Tab:
    one_hot = lay.V * lay.C <= ONE_HOT_LIMIT
    wte_formula, wte_explain = ONE_HOT if one_hot else INDEX
    tab = Tab(book, EMBEDDINGS, N=lay.N, C=lay.C, V=lay.V, wte_formula=wte_formula, wte_explain=wte_explain)
    ws, labels = tab.ws, book["tokens_text"]
    tok = tab.section("token embedding: row id of wte", wte_formula, rows=lay.N, cols=lay.C, row_labels=labels)
    if one_hot:
        ws.array(tok, wte_formula, S.NUM)
    else:
        ids = book["tokens_ids"]
        for i in range(lay.N):
            for j in range(lay.C):
                col = f"{col_letter(tok.c1 + j)}${tok.r1 - 1}"
                ws.formula(tok.r1 + i, tok.c1 + j, f"=INDEX(wte,{ids.cell(i).abs}+1,{col}+1)")
    tab.define("embeddings_wte", diverging(tab, tok))
    formula = "=MMULT(IF(positions=TRANSPOSE(wpe_positions),1,0),wpe)"
    pos = tab.section("position embedding: row position of wpe", formula, rows=lay.N, cols=lay.C, row_labels=labels)
    tab.define("embeddings_wpe", diverging(tab, ws.array(pos, formula, S.NUM)))
    formula = "=embeddings_wte+embeddings_wpe"
    out = tab.section("x = token embedding + position embedding (enters block 0)", formula,
                      rows=lay.N, cols=lay.C, row_labels=labels)
    tab.define("embeddings_out", diverging(tab, ws.array(out, formula, S.NUM)))
    return tab
