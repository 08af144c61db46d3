"""Parameter tabs: every weight is a cell, every tensor a defined name (wte, wpe, h0_attn_c_attn_w, ...).

Tensors of a block are stacked down one tab (h0, h1, ...), each under a title row with its Hugging Face
name and shape. Values are written lazily, tensor by tensor, so memory stays bounded at full size.

Each row of weights is a single run of numbers: the row index in column B right next to the values, nothing
else in the row (wte's token texts are on the vocab tab: its row index is the token id). IronCalc stores such
rows in ~8 bytes per cell; a gap or a text cell in the row costs ~54 bytes for every cell of it (6.7 GB
instead of ~1 GB at GPT-2 small's size).
"""
from __future__ import annotations

from ..layout import LN_F_PARAMS, TAB_COLORS, WPE, WTE, Layout, S, params_sheet
from ..model import Model, hf_key, param_shapes
from ..xlsx.book import Book, Range

TAB_COLOR = TAB_COLORS["params"]


def _header(ws, title: str, summary: str) -> int:
    ws.write(1, 1, "⌂ start", S.LINK)
    ws.link(1, 1, "start", "A1", "back to the start tab")
    ws.write(1, 2, title, S.TITLE)
    ws.write(2, 2, summary, S.SUBTITLE)
    ws.freeze = (2, 2)
    ws.tab_color = TAB_COLOR
    ws.width(1, 7)
    ws.width(2, 14)
    return 4


def tensor(book: Book, ws, row: int, name: str, shape: tuple[int, ...], data, first_col: str = "row") -> int:
    """Lay out one tensor from `row`; returns the next free row."""
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    ws.write(row, 2, f"{name}   ({hf_key(name)}, shape {' x '.join(map(str, shape))})", S.SECTION)
    ws.write(row + 1, 2, f"{first_col} \\ column", S.INDEX)
    rng = ws.block(row + 2, 3, (rows, cols), data)  # checks the extent of everything below
    # ~200K index cells at full size: straight into the cell map (write() builds a Range for each)
    ws.cells.update({(row + 1, 3 + j): (j, S.INDEX) for j in range(cols)})
    ws.cells.update({(row + 2 + i, 2): (i, S.POS) for i in range(rows)})
    book.define(name, rng)
    if name in ("wte", "wpe"):  # the row numbers double as ids / positions for the one-hot lookups
        book.define(f"{name}_positions" if name == "wpe" else "vocab_ids", Range(ws.name, row + 2, 2, row + 1 + rows, 2))
    return row + 2 + rows + 1


def parameter_tabs(book: Book, lay: Layout, model: Model, vocab_texts: list[str]) -> None:
    shapes = param_shapes(model.config)
    load = lambda name: (lambda: model.params[name])  # noqa: E731 - deferred until the writer reaches it

    ws = book.sheet(WTE)
    r = _header(ws, "wte: token embeddings (also the LM head)",
                "One row per vocabulary entry (its id in column B; the token itself on the vocab tab): the vector "
                "that token starts as.")
    tensor(book, ws, r, "wte", shapes["wte"], load("wte"), first_col="token id")
    ws = book.sheet(WPE)
    r = _header(ws, "wpe: position embeddings", "One row per position in the context.")
    tensor(book, ws, r, "wpe", shapes["wpe"], load("wpe"))
    for i in range(lay.L):
        ws = book.sheet(params_sheet(i))
        r = _header(ws, f"h{i}: the parameters of block {i}", "ln_1, attention (c_attn, c_proj), ln_2, MLP (c_fc, c_proj).")
        for name in [n for n in shapes if n.startswith(f"h{i}_")]:
            r = tensor(book, ws, r, name, shapes[name], load(name))
    ws = book.sheet(LN_F_PARAMS)
    r = _header(ws, "ln_f_params: the final layer norm's parameters", "Applied after the last block.")
    for name in ("ln_f_w", "ln_f_b"):
        r = tensor(book, ws, r, name, shapes[name], load(name))

