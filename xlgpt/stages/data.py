"""Data tabs: the vocabulary (and, for the live tokenizer, its tables)."""
from __future__ import annotations

from ..layout import TAB_COLORS, VOCAB, Layout, S
from ..tokenizer import Tokenizer
from ..xlsx.book import Book, Range

VISIBLE = {i: chr(0x2400 + i) for i in range(32)} | {0x7F: "\u2421"}


def display(text: str) -> str:
    """A token's text made printable for labels: control characters as their visible symbols (␊ for a newline)."""
    return "".join(VISIBLE.get(ord(ch), ch) for ch in text)


def vocab_texts(tok: Tokenizer) -> list[str]:
    return [display(tok.token_text(i)) for i in range(tok.vocab_size)]


def vocab_tab(book: Book, lay: Layout, tok: Tokenizer, texts: list[str]) -> None:
    ws = book.sheet(VOCAB)
    ws.tab_color = TAB_COLORS["data"]
    ws.write(1, 1, "⌂ start", S.LINK)
    ws.link(1, 1, "start", "A1", "back to the start tab")
    ws.write(1, 2, "vocab: GPT-2's vocabulary", S.TITLE)
    ws.write(2, 2, "id, the token as stored in vocab.json (byte-level: Ġ is a space, Ċ a newline), and as text.", S.SUBTITLE)
    ws.freeze = (3, 1)
    for j, h in enumerate(["id", "vocab.json", "text"], start=1):
        ws.write(3, j, h, S.SECTION)
    first = 4
    for i in range(tok.vocab_size):
        ws.write(first + i, 1, i)
        ws.write(first + i, 2, tok.decoder[i])
        ws.write(first + i, 3, texts[i])
    last = first + tok.vocab_size - 1
    book.define("vocab_token", Range(VOCAB, first, 2, last, 2))
    book.define("vocab_text", Range(VOCAB, first, 3, last, 3))
    ws.width(2, 20)
    ws.width(3, 20)
