"""Parameter tabs: every weight is a cell, every tensor a defined name (wte, wpe, h0_attn_c_attn_w, ...).

Tensors of a block are stacked down one tab (h0, h1, ...), each under a title row with its Hugging Face
name and shape. Values are written lazily, tensor by tensor, so memory stays bounded at full size.
"""
from __future__ import annotations

from ..layout import LN_F_PARAMS, WPE, WTE, Layout, S, params_sheet
from ..model import Model, hf_key, param_shapes
from ..xlsx.book import Book, Range

TAB_COLOR = "A6A6A6"


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


def tensor(book: Book, ws, row: int, name: str, shape: tuple[int, ...], data, row_labels=None) -> int:
    """Lay out one tensor from `row`; returns the next free row."""
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    ws.write(row, 2, f"{name}   ({hf_key(name)}, shape {' x '.join(map(str, shape))})", S.SECTION)
    ws.write(row + 1, 2, "row \\ column", S.INDEX)
    for j in range(cols):
        ws.write(row + 1, 3 + j, j, S.INDEX)
    for i in range(rows):
        ws.write(row + 2 + i, 1, i, S.POS)
        if row_labels is not None:
            ws.write(row + 2 + i, 2, row_labels[i], S.LABEL)
    rng = ws.block(row + 2, 3, (rows, cols), data)
    book.define(name, rng)
    if name in ("wte", "wpe"):  # the row numbers double as ids / positions for the one-hot lookups
        book.define(f"{name}_positions" if name == "wpe" else "vocab_ids", Range(ws.name, row + 2, 1, row + 1 + rows, 1))
    return row + 2 + rows + 1


def parameter_tabs(book: Book, lay: Layout, model: Model, vocab_texts: list[str]) -> None:
    shapes = param_shapes(model.config)
    load = lambda name: (lambda: model.params[name])  # noqa: E731 - deferred until the writer reaches it

    ws = book.sheet(WTE)
    r = _header(ws, "wte: token embeddings (also the LM head)", "One row per vocabulary entry: the vector that token starts as.")
    tensor(book, ws, r, "wte", shapes["wte"], load("wte"), vocab_texts)
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

