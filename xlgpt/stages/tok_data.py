"""The live tokenizer's data tabs: merges (with a pair lookup table), unicode (character classes), bytes.

Lookups into long tables are INDEX calls, never searches: IronCalc's MATCH/VLOOKUP/LOOKUP scan the whole range
(about 37 ns per row, 2 ms per lookup over 50,000 rows, measured), so the merge ranks sit in a hash table. Only
short tables are searched (VLOOKUP on the 1,627 unicode ranges and the 256 bytes).
Pair (a, b) of token ids is stored in slot h1(a, b) or, if that slot was taken, in slot h2(a, b) (cuckoo hashing),
    h(a, b) = MOD(a * X + b * Y, S)                 S a prime, X and Y fixed multipliers,
so finding its rank takes at most four INDEX calls whatever the vocabulary size. All arithmetic stays below
2^34: exact in every engine.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..errors import XlgptError
from ..layout import BYTES, MERGES, UNICODE_TAB, Layout, S, Tab
from ..tokenizer import BYTE_CHAR, Tokenizer
from ..unicode_classes import NAMES, class_ranges
from ..xlsx.book import Book, Range, Style

NO_MERGE = 1_000_000  # "no pair": larger than any rank, shown as "–"
KEY_BASE = 65536  # pair key = left id * 65536 + right id (ids < 65536)
DATA_COLOR = "A6A6A6"

# number formats: -1 (an empty slot) shows nothing, NO_MERGE shows "–"
ID_STYLE = Style(num_fmt='0;"";0', size=10)
RANK_STYLE = Style(num_fmt=f'[>={NO_MERGE}]"–";[<0]"";0', size=10, color="7F7F7F")
SMALL = Style(size=10)
SMALL_INT = Style(num_fmt='0;"";0', size=10, color="595959")


@dataclass(frozen=True)
class PairHash:
    size: int  # S, a prime
    mult: tuple[tuple[int, int], tuple[int, int]]  # (X1, Y1), (X2, Y2)
    slot_key: np.ndarray  # [S] key a * 65536 + b, or -1
    slot_rank: np.ndarray  # [S] merge rank, or -1

    def slots(self, a: int, b: int) -> tuple[int, int]:
        (x1, y1), (x2, y2) = self.mult
        return (a * x1 + b * y1) % self.size, (a * x2 + b * y2) % self.size

    def rank(self, a: int, b: int) -> int:
        """What the sheet computes: the rank of pair (a, b), or NO_MERGE."""
        key = a * KEY_BASE + b
        for s in self.slots(a, b):
            if self.slot_key[s] == key:
                return int(self.slot_rank[s])
        return NO_MERGE

    def formula(self, a: str, b: str) -> str:
        """Formula text (no "=") for the rank of pair (a, b); a and b are cell references or expressions."""
        (x1, y1), (x2, y2) = self.mult
        key = f"{a}*{KEY_BASE}+{b}"
        s1 = f"MOD({a}*{x1}+{b}*{y1},{self.size})+1"
        s2 = f"MOD({a}*{x2}+{b}*{y2},{self.size})+1"
        return (f"IF(INDEX(pairs_key,{s1})={key},INDEX(pairs_rank,{s1}),"
                f"IF(INDEX(pairs_key,{s2})={key},INDEX(pairs_rank,{s2}),{NO_MERGE}))")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def _next_prime(n: int) -> int:
    while not _is_prime(n):
        n += 1
    return n


def build_pair_hash(pairs: list[tuple[int, int]], seed: int = 0) -> PairHash:
    """Cuckoo hash of (left id, right id) -> rank (the index in `pairs`), with two choices per pair."""
    if any(not (0 <= a < KEY_BASE and 0 <= b < KEY_BASE) for a, b in pairs):
        raise XlgptError(f"the live tokenizer needs token ids below {KEY_BASE}")
    n = len(pairs)
    size = _next_prime(max(11, int(2.3 * n) + 1))
    rng = random.Random(seed)
    for attempt in range(200):
        if attempt and attempt % 20 == 0:
            size = _next_prime(int(size * 1.2) + 1)
        mult = tuple((rng.randrange(1, size), rng.randrange(1, size)) for _ in range(2))
        table = PairHash(size, mult, np.full(size, -1, dtype=np.int64), np.full(size, -1, dtype=np.int64))
        if _insert_all(table, pairs, rng):
            return table
    raise XlgptError("could not build the pair lookup table")  # pragma: no cover - never seen


def _insert_all(t: PairHash, pairs, rng) -> bool:
    for rank, (a, b) in enumerate(pairs):
        key, cur = a * KEY_BASE + b, rank
        slot = t.slots(a, b)[0]
        for _ in range(500):
            if t.slot_key[slot] < 0:
                t.slot_key[slot], t.slot_rank[slot] = key, cur
                break
            # kick out the occupant and move it to its other slot
            key, t.slot_key[slot] = t.slot_key[slot], key
            cur, t.slot_rank[slot] = t.slot_rank[slot], cur
            oa, ob = divmod(int(key), KEY_BASE)
            s1, s2 = t.slots(oa, ob)
            slot = s2 if slot == s1 else s1
        else:
            return False
    return True


def _header(book: Book, name: str, key: str, **fmt) -> Tab:
    tab = Tab(book, name, key, **fmt)
    tab.ws.tab_color = DATA_COLOR
    return tab


def merges_tab(book: Book, lay: Layout, tok: Tokenizer) -> PairHash:
    """merges.txt in rank order (names merges_left, merges_right, merges_id) and the pair hash table."""
    pairs = [(tok.encoder[a], tok.encoder[b]) for a, b in tok.merges]
    table = build_pair_hash(pairs)
    n = len(pairs)
    (x1, y1), (x2, y2) = table.mult
    tab = _header(book, MERGES, "merges", K=n, S=table.size, X1=x1, Y1=y1, X2=x2, Y2=y2)
    ws = tab.ws
    top = tab.row
    # left: merges.txt, one row per rank ------------------------------------------------------------------
    ws.write(top, 2, "merges.txt: the merges in the order they were learned (rank)", S.SECTION)
    hdr = top + 1
    for j, lab in enumerate(["rank", "merges.txt", "left id", "right id", "merged id"]):
        ws.write(hdr, 1 + j, lab, S.INDEX)
    first = hdr + 1
    rows = max(n, 1)
    if n:
        ws.block(first, 1, (n, 1), np.arange(n, dtype=float).reshape(-1, 1), SMALL_INT)
        for r, (a, b) in enumerate(tok.merges):
            ws.write(first + r, 2, f"{a} {b}", SMALL)
        ids = np.array([[pa, pb, m] for (pa, pb), m in zip(pairs, tok.merge_ids)], dtype=float)
        ws.block(first, 3, (n, 3), ids, SMALL_INT)
    else:
        ws.write(first, 2, "(this vocabulary has no merges)", S.NOTE)
    book.define("merges_left", Range(MERGES, first, 3, first + rows - 1, 3))
    book.define("merges_right", Range(MERGES, first, 4, first + rows - 1, 4))
    book.define("merges_id", Range(MERGES, first, 5, first + rows - 1, 5))
    # right: the hash table -------------------------------------------------------------------------------
    c0 = 8
    ws.write(top, c0, f"pair lookup: slot h1 or h2 holds key = left*{KEY_BASE}+right and its rank "
             f"(h1 = MOD(left*{x1}+right*{y1}, {table.size}), h2 = MOD(left*{x2}+right*{y2}, {table.size}))", S.SECTION)
    for j, lab in enumerate(["key (slot 0, 1, ... downwards)", "rank"]):
        ws.write(hdr, c0 + j, lab, S.INDEX)
    data = np.stack([table.slot_key, table.slot_rank], axis=1).astype(float)  # -1: an empty slot
    ws.block(first, c0, (table.size, 2), data, SMALL_INT)
    book.define("pairs_key", Range(MERGES, first, c0, first + table.size - 1, c0))
    book.define("pairs_rank", Range(MERGES, first, c0 + 1, first + table.size - 1, c0 + 1))
    ws.freeze = (hdr, 1)
    ws.width(2, 16)
    ws.width(c0, 22)
    return table


def unicode_tab(book: Book, lay: Layout) -> None:
    """Range starts and classes (names unicode_start, unicode_class)."""
    ranges = class_ranges()
    tab = _header(book, UNICODE_TAB, "unicode", R=len(ranges))
    ws = tab.ws
    hdr = tab.row
    for j, lab in enumerate(["first code point", "class", "from"]):
        ws.write(hdr, 1 + j, lab, S.INDEX)
    first = hdr + 1
    ws.block(first, 1, (len(ranges), 2), np.array(ranges, dtype=float), SMALL_INT)
    for i, (start, cls) in enumerate(ranges):
        ch = chr(start)
        shown = f" {ch}" if start >= 32 and start != 0x7F and not 0xD800 <= start <= 0xDFFF and start < 0xFFFE else ""
        ws.write(first + i, 3, f"U+{start:04X}{shown}  ({NAMES[cls]})", SMALL)
    last = first + len(ranges) - 1
    book.define("unicode_start", Range(UNICODE_TAB, first, 1, last, 1))
    book.define("unicode_class", Range(UNICODE_TAB, first, 2, last, 2))
    book.define("unicode_table", Range(UNICODE_TAB, first, 1, last, 2))
    ws.freeze = (hdr, 1)
    ws.width(1, 16)
    ws.width(3, 30)


def bytes_tab(book: Book, lay: Layout, tok: Tokenizer) -> None:
    """byte -> its byte-level character, that character's code, and the byte's token id (bytes_table)."""
    tab = _header(book, BYTES, "bytes")
    ws = tab.ws
    hdr = tab.row
    ws.write(hdr - 1, 2, "byte -> its byte-level character and token id", S.SECTION)
    for j, lab in enumerate(["byte", "hex", "character", "its code", "token id"]):
        ws.write(hdr, 1 + j, lab, S.INDEX)
    first = hdr + 1
    for b in range(256):
        r = first + b
        ws.write(r, 1, b, SMALL_INT)
        ws.write(r, 2, f"{b:02X}", SMALL)
        ws.write(r, 3, BYTE_CHAR[b], SMALL)
        ws.write(r, 4, ord(BYTE_CHAR[b]), SMALL_INT)
        ws.write(r, 5, tok.byte_ids[b], SMALL_INT)
    book.define("byte_token_id", Range(BYTES, first, 5, first + 255, 5))
    book.define("bytes_table", Range(BYTES, first, 1, first + 255, 5))
    ws.freeze = (hdr, 1)
