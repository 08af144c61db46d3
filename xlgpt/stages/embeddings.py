"""x = wte[id] + wpe[position]    [N] ids -> [N, C]"""
from __future__ import annotations

from ..layout import EMBEDDINGS, Layout, S, Tab
from ..xlsx.book import col_letter


def embeddings(book, lay: Layout) -> Tab:
    tab = Tab(book, EMBEDDINGS, N=lay.N, C=lay.C, V=lay.V)
    ws, labels, ids = tab.ws, book["tokens_text"], book["tokens_ids"]
    tok = tab.section("token embedding: row (id + 1) of wte", "=INDEX(wte, id+1, j+1)", rows=lay.N, cols=lay.C,
                      row_labels=labels)
    pos = tab.section("position embedding: row (position + 1) of wpe", "=INDEX(wpe, position+1, j+1)",
                      rows=lay.N, cols=lay.C, row_labels=labels)
    for i in range(lay.N):
        id_cell = ids.cell(i).abs
        for j in range(lay.C):
            col = f"{col_letter(tok.c1 + j)}${tok.r1 - 1}"
            ws.formula(tok.r1 + i, tok.c1 + j, f"=INDEX(wte,{id_cell}+1,{col}+1)", S.NUM)
            col = f"{col_letter(pos.c1 + j)}${pos.r1 - 1}"
            ws.formula(pos.r1 + i, pos.c1 + j, f"=INDEX(wpe,$A{pos.r1 + i}+1,{col}+1)", S.NUM)
    tok = tab.define("embeddings_wte", tok)
    pos = tab.define("embeddings_wpe", pos)
    out = tab.section("x = token embedding + position embedding (enters block 0)", "=embeddings_wte + embeddings_wpe",
                      rows=lay.N, cols=lay.C, row_labels=labels)
    ws.array(out, "=embeddings_wte+embeddings_wpe", S.NUM)
    tab.define("embeddings_out", out)
    return tab
