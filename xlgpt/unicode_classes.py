"""The four character classes GPT-2's pre-tokenizer pattern tells apart, as ranges of code points.

GPT2_PATTERN (xlgpt.tokenizer) only ever asks whether a character is a letter (\\p{L}), a number (\\p{N}),
whitespace (\\s) or none of these. The live tokenizer looks the class up in a table of range starts
(the `unicode` tab): the class of code point c is the class of the last range starting at or before c.

The table is generated from the `regex` module, the same engine and Unicode version that
xlgpt.tokenizer uses, over every code point 0 .. 0x10FFFF (a few hundred milliseconds, cached).
Checked against tiktoken for every code point: no difference.
"""
from __future__ import annotations

from bisect import bisect_right
from functools import cache

import regex

LETTER, NUMBER, SPACE, OTHER = 1, 2, 3, 4
NAMES = {LETTER: "letter", NUMBER: "number", SPACE: "whitespace", OTHER: "other"}
SHORT = "LNSO"  # MID(SHORT, class, 1) in the sheet
MAX_CODE_POINT = 0x10FFFF

# first match wins, as in the pattern: letters and numbers never overlap, and neither is whitespace
_CLASSES = ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+"))


@cache
def class_ranges() -> tuple[tuple[int, int], ...]:
    """((start, class), ...) sorted by start, starting at 0; adjacent ranges have different classes."""
    text = "".join(map(chr, range(MAX_CODE_POINT + 1)))  # lone surrogates are fine in a str
    cls = bytearray([OTHER]) * (MAX_CODE_POINT + 1)
    for code, pattern in reversed(_CLASSES):  # earlier classes win where they overlap
        for m in regex.finditer(pattern, text):
            cls[m.start():m.end()] = bytes([code]) * (m.end() - m.start())
    ranges, prev = [], None
    for cp in range(MAX_CODE_POINT + 1):
        if cls[cp] != prev:
            ranges.append((cp, cls[cp]))
            prev = cls[cp]
    return tuple(ranges)


@cache
def _starts() -> list[int]:
    return [s for s, _ in class_ranges()]


def char_class(cp: int) -> int:
    """The class of one code point, by the same range lookup the sheet does."""
    return class_ranges()[bisect_right(_starts(), cp) - 1][1]
