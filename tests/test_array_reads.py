"""A workbook rule: a formula that reads one cell of a multi-cell array formula must also touch the array.

IronCalc does not record a dependency on an array formula when another formula reads one of its cells
(other than the top-left) by a plain reference or INDEX: it then reads a stale value (0 on the first
evaluation). Range functions (SUM, MMULT, ...) over the array are fine, and so is adding `anchor*0`.
"""
from __future__ import annotations

import re

import pytest

from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.xlsx.book import Formula, cell_ref, col_number

SINGLE = re.compile(r"(?:('(?:[^']|'')+'|[A-Za-z_][\w.]*)!)?\$?([A-Z]{1,3})\$?(\d+)(?![\d:(\w])")
INDEX = re.compile(r"INDEX\((\w+)")


def offenders(book):
    arrays = {}
    for s in book.sheets:
        arrays[s.name] = [a.rng for a in s.arrays if a.rng.shape != (1, 1)]

    def covering(sheet, r, c):
        for rng in arrays.get(sheet, []):
            if rng.r1 <= r <= rng.r2 and rng.c1 <= c <= rng.c2:
                return rng

    def touches(text, sheet, rng):
        anchor = cell_ref(rng.r1, rng.c1)
        plain = text.replace("$", "")
        return anchor in plain or any(n in text for n, r in book.names.items() if r.sheet == rng.sheet
                                      and (r.r1, r.c1) == (rng.r1, rng.c1) and re.search(rf"\b{n}\b(?!,)", text))

    bad = []
    for s in book.sheets:
        formulas = [(k, v.text) for k, (v, _) in s.cells.items() if isinstance(v, Formula)]
        formulas += [((a.rng.r1, a.rng.c1), a.text) for a in s.arrays]
        for where, text in formulas:
            for m in SINGLE.finditer(text):
                if m.start() and text[m.start() - 1] == ":":
                    continue
                sheet = m.group(1).strip("'") if m.group(1) else s.name
                r, c = int(m.group(3)), col_number(m.group(2))
                rng = covering(sheet, r, c)
                if rng and (r, c) != (rng.r1, rng.c1) and not touches(text, sheet, rng):
                    bad.append((s.name, where, text))
            for m in INDEX.finditer(text):
                target = book.names.get(m.group(1))
                rng = target and covering(target.sheet, target.r1, target.c1)
                if rng and not touches(text.replace(f"INDEX({m.group(1)}", ""), target.sheet, rng):
                    bad.append((s.name, where, text))
    return bad


@pytest.mark.parametrize("spec,live", [("toy", True), ("toy", False),
                                       ("tiny:merges=50000,embd=48,layers=1,heads=1", True)])  # INDEX embeddings
def test_no_untracked_reads_of_array_cells(spec, live):
    book = build_book(load_model(spec), BuildOptions(live_tokenizer=live))
    bad = offenders(book)
    assert not bad, bad[:5]
