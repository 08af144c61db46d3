"""The attention tab: every head's causal attention pattern as a colour-scaled token-by-token grid.

Maps are laid out in a grid: one band of rows per layer, one band of columns per head. Each map is one array
formula referring to the block's weights (={block_i_attn_h}), so it recalculates with the model; rows are the
query tokens (who looks), columns the key tokens (who is looked at), each row sums to 1.
"""
from __future__ import annotations

from ..layout import ATTENTION, Layout, S, Tab
from ..contract import T
from ..xlsx.book import ColorScale, Range, Same, Style

MAP_NUM = Style(num_fmt="0.00;-0.00;", size=9)  # exact zeros (the causal mask) show as blank
KEY_LABEL = Style(color="1F3864", size=9, bold=True)
QUERY_LABEL = Style(color="1F3864", size=9, bold=True, halign="right")
GAP = 1  # empty columns between maps


def attention_tab(book, lay: Layout, t: dict) -> Tab:
    N, L, H = lay.N, lay.L, lay.H
    tab = Tab(book, ATTENTION, N=N, L=L, H=H)
    ws = tab.ws
    ws.freeze = (2, 0)
    labels = book[T.tokens_text()]
    width = N + 1 + GAP  # a label column, N key columns, a gap
    top = tab.row
    height = N + 3  # title, key labels, N query rows, a gap
    for i in range(L):
        for h in range(H):
            r0 = top + i * height
            c0 = 1 + h * width  # the query label column; the map starts one to the right
            ws.write(r0, c0 + 1, f"block {i}, head {h}", S.SECTION)
            ws.write(r0 + 1, c0, "query \\ key", S.INDEX)
            for j in range(N):
                src = labels.cell(j)
                ws.formula(r0 + 1, c0 + 1 + j, f"={src.abs}", KEY_LABEL, value=Same(src))
                ws.formula(r0 + 2 + j, c0, f"={src.abs}", QUERY_LABEL, value=Same(src))
            rng = Range(ATTENTION, r0 + 2, c0 + 1, r0 + 1 + N, c0 + N)
            tab.define(T.attention_h(i, h), ws.array(rng, f"={T.block_attn_h(i, h)}", MAP_NUM,
                                                     value=t[T.attention_h(i, h)]))
            ws.color_scales.append(ColorScale(rng, colors=("FFFFFF", "F8696B"), points=("num:0", "num:1")))
    for h in range(H):
        c0 = 1 + h * width
        ws.width(c0, 11)
        ws.column_style(c0 + 1, MAP_NUM, c0 + N)
        ws.width(c0 + 1, 6, c0 + N)
        ws.width(c0 + N + 1, 2)
    ws.default_style_from = None
    tab.row = top + L * height
    return tab
