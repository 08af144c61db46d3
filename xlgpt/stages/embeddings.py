"""x = wte[id] + wpe[position]    [N] ids -> [N, C]

Small vocabularies: one-hot rows times the embedding matrix, MMULT(IF(id = vocab ids, 1, 0), wte), one formula
for the whole [N, C] block (a per-cell INDEX into a range costs the range's size in the `formulas` engine).
Large ones (GPT-2's 50,257 x 768): one INDEX per cell, because the one-hot MMULT would cost N x V x C
multiplications (0.6 G, seconds in IronCalc) on every recalculation; `formulas` cannot load such a workbook anyway.
"""
from __future__ import annotations

from ..contract import T
from ..layout import EMBEDDINGS, Layout, Tab
from ..xlsx.book import col_letter
from .common import diverging, section

ONE_HOT_LIMIT = 2_000_000  # wte cells up to which the one-hot MMULT is used
ONE_HOT = ("=MMULT(IF(tokens_ids=TRANSPOSE(vocab_ids),1,0),wte)",
           "a one-hot row (1 at the token's id) times wte: row id of wte, for every token at once")
INDEX = ("=INDEX(wte,id+1,j+1)", "row id + 1, column j + 1 of wte (id from the tokens tab, j the column number above)")


def embeddings(book, lay: Layout, t: dict) -> Tab:
    one_hot = lay.V * lay.C <= ONE_HOT_LIMIT
    wte_formula, wte_explain = ONE_HOT if one_hot else INDEX
    tab = Tab(book, EMBEDDINGS, N=lay.N, C=lay.C, V=lay.V, wte_formula=wte_formula, wte_explain=wte_explain)
    ws, labels = tab.ws, book[T.tokens_text()]
    tok_value = t[T.embeddings_wte()]
    if one_hot:
        tok = section(tab, "token embedding: row id of wte", wte_formula, tok_value, labels)
    else:
        tok = tab.section("token embedding: row id of wte", wte_formula, rows=lay.N, cols=lay.C, row_labels=labels)
        ids = book[T.tokens_ids()]
        for i in range(lay.N):
            for j in range(lay.C):
                col = f"{col_letter(tok.c1 + j)}${tok.r1 - 1}"
                ws.formula(tok.r1 + i, tok.c1 + j, f"=INDEX({T.wte()},{ids.cell(i).abs}+1,{col}+1)",
                           value=tok_value[i, j])
    tab.define(T.embeddings_wte(), diverging(tab, tok))
    formula = f"=MMULT(IF({T.positions()}=TRANSPOSE({T.wpe_positions()}),1,0),{T.wpe()})"
    tab.define(T.embeddings_wpe(), diverging(tab, section(
        tab, "position embedding: row position of wpe", formula, t[T.embeddings_wpe()], labels)))
    formula = f"={T.embeddings_wte()}+{T.embeddings_wpe()}"
    tab.define(T.embeddings_out(), diverging(tab, section(
        tab, "x = token embedding + position embedding (enters block 0)", formula, t[T.embeddings_out()], labels)))
    return tab
