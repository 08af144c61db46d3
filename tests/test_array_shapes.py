"""Workbook rules for Gnumeric (and any engine that does not broadcast like Excel):

* inside an array formula, every array argument of IF has the same shape (scalars are fine): Gnumeric gives
  #VALUE! for `{=IF($I$1:$L$1=1,$D$2:$D$5,0)}`, where Excel broadcasts the row against the column. Operators
  broadcast everywhere, so `x+0*y` gives an argument its full shape;
* INDEX into a one-row range names its row: `INDEX($J$1:$M$1,1,3)`, not `INDEX($J$1:$M$1,3)`, which Gnumeric
  reads as row 3 (#REF!).

The scanner infers the shape of each expression from the ranges it reads (names and A1 references) and the
functions around them; a function it does not know fails the test, so new formulas teach it their shapes.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.xlsx.book import Formula, col_number

TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"]|"")*")
  | (?P<ref>(?:(?:'(?:[^']|'')+'|[A-Za-z_][\w.]*)!)?\$?[A-Z]{1,3}\$?\d+(?::\$?[A-Z]{1,3}\$?\d+)?(?![\w(]))
  | (?P<func>[A-Za-z_][\w.]*)\(
  | (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][\w.]*)
  | (?P<op><=|>=|<>|[-+*/^&=<>%])
  | (?P<punct>[(),])
)""", re.X)
CELL = re.compile(r"\$?([A-Z]{1,3})\$?(\d+)")

ELEMENTWISE = {"IFERROR", "EXP", "LN", "SQRT", "TANH", "INT", "ABS", "ISNUMBER", "ISERROR", "ISNA", "MID", "LEN",
               "CODE", "_XLFN.UNICODE", "UNICODE", "_XLFN.UNICHAR", "UNICHAR", "CHAR", "ROUND", "MOD", "NOT",
               "EXACT", "LEFT", "RIGHT", "VALUE", "SIGN", "POWER"}
SCALAR = {"SUM", "MAX", "MIN", "AVERAGE", "SUMPRODUCT", "COUNT", "COUNTA", "AND", "OR", "PI", "RAND", "INDEX",
          "CONCATENATE", "SUMIF", "SUMSQ", "_XLFN.VAR.P", "VAR.P", "VARP", "TRUE", "FALSE"}
SHAPE_OF_ARG = {"MATCH": 0, "VLOOKUP": 0, "LARGE": 1, "SMALL": 1, "COUNTIF": 1, "RANK": 0}  # vectorised over that argument


def broadcast(*shapes):
    out = None
    for s in shapes:
        if s is None:
            continue
        if out is None:
            out = s
            continue
        out = tuple(a if b == 1 else b if a == 1 else max(a, b) for a, b in zip(out, s))
    return out


class Scanner:
    """Shapes of one formula's expressions; records IF calls whose array arguments differ in shape and
    INDEX calls with one index into a one-row range."""

    def __init__(self, book, sheet: str, text: str):
        self.book, self.sheet, self.text = book, sheet, text
        self.tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in TOKEN.finditer(text.lstrip("="))]
        self.i = 0
        self.problems: list[str] = []

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def ref_shape(self, text):
        if "!" in text:
            text = text.rpartition("!")[2]
        cells = CELL.findall(text)
        if len(cells) == 1:
            return None
        (c1, r1), (c2, r2) = cells
        rows, cols = abs(int(r2) - int(r1)) + 1, abs(col_number(c2) - col_number(c1)) + 1
        return None if (rows, cols) == (1, 1) else (rows, cols)

    def name_shape(self, name):
        rng = self.book.names.get(name)
        if rng is None:
            raise AssertionError(f"unknown name {name!r} in {self.text}")
        return None if rng.shape == (1, 1) else rng.shape

    # expression := unary (op unary)*, shapes broadcast over operators
    def expr(self):
        shape = self.unary()
        while self.peek()[0] == "op":
            self.take()
            if self.peek() == ("punct", ")") or self.peek()[0] is None:  # postfix %
                break
            shape = broadcast(shape, self.unary())
        return shape

    def unary(self):
        while self.peek() in (("op", "-"), ("op", "+")):
            self.take()
        kind, text = self.take()
        if kind == "str" or kind == "num":
            return None
        if kind == "ref":
            return self.ref_shape(text)
        if kind == "name":
            return None if text.upper() in ("TRUE", "FALSE") else self.name_shape(text)
        if kind == "punct" and text == "(":
            shape = self.expr()
            assert self.take() == ("punct", ")"), self.text
            return shape
        if kind == "func":
            return self.call(text.upper())
        raise AssertionError(f"cannot parse {self.text!r} at {text!r}")

    def args(self):
        out, texts = [], []
        if self.peek() == ("punct", ")"):
            self.take()
            return out, texts
        while True:
            start = self.i
            out.append(self.expr())
            texts.append(self.tokens[start:self.i])
            kind, text = self.take()
            if text == ")":
                return out, texts
            assert text == ",", f"cannot parse {self.text!r}"

    def call(self, fn):
        shapes, texts = self.args()
        if fn == "IF":
            arrays = {s for s in shapes if s is not None}
            if len(arrays) > 1:
                self.problems.append(f"IF over arguments of shapes {sorted(arrays)}")
            return broadcast(*shapes)
        if fn == "INDEX":
            if len(shapes) == 2 and shapes[0] is not None and shapes[0][0] == 1 and shapes[0][1] > 1:
                self.problems.append("INDEX with one index into a one-row range")
            return None
        if fn in ELEMENTWISE:
            return broadcast(*shapes)
        if fn in SCALAR:
            return None
        if fn in SHAPE_OF_ARG:
            return shapes[SHAPE_OF_ARG[fn]]
        if fn == "TRANSPOSE":
            return None if shapes[0] is None else shapes[0][::-1]
        if fn == "MMULT":
            a, b = (s or (1, 1) for s in shapes)
            return None if (a[0], b[1]) == (1, 1) else (a[0], b[1])
        if fn in ("ROW", "COLUMN"):
            s = shapes[0] if shapes else None
            if s is None:
                return None
            return (s[0], 1) if fn == "ROW" and s[0] > 1 else (1, s[1]) if fn == "COLUMN" and s[1] > 1 else None
        raise AssertionError(f"the shape scanner does not know {fn}() (in {self.text}): teach it")

    def scan(self) -> list[str]:
        self.expr()
        assert self.i >= len(self.tokens), f"cannot parse {self.text!r}"
        return self.problems


def offenders(book):
    bad = []
    for s in book.sheets:
        for a in s.arrays:
            bad += [(s.name, a.rng.a1, p, a.text) for p in Scanner(book, s.name, a.text).scan()]
        for where, (v, _) in s.cells.items():
            if isinstance(v, Formula):  # plain formulas: only the INDEX rule applies (no array evaluation)
                bad += [(s.name, where, p, v.text) for p in Scanner(book, s.name, v.text).scan() if "INDEX" in p]
    return bad


def test_scanner_finds_both_constructs():
    book, sheet = SimpleNamespace(names={}), "s"
    assert Scanner(book, sheet, "=IF($I$1:$L$1=1,$D$2:$D$5,0)").scan()
    assert not Scanner(book, sheet, "=IF($I$1:$L$1+0*$D$2:$D$5=1,$D$2:$D$5+0*$I$1:$L$1,0)").scan()
    assert not Scanner(book, sheet, "=IF($I$1:$L$1>$D$2:$D$5,1,0)").scan()
    assert Scanner(book, sheet, "=INDEX($J$1:$M$1,3)").scan()
    assert not Scanner(book, sheet, "=INDEX($J$1:$M$1,1,3)").scan()
    assert not Scanner(book, sheet, "=INDEX($J$1:$J$9,3)").scan()


@pytest.mark.parametrize("spec,opts", [
    ("toy", dict(live_tokenizer=True)),
    ("toy", dict(live_tokenizer=False)),
    ("toy", dict(live_tokenizer=True, bos=True, temperature=0.8, sample_top_k=5, seed=0.3)),
    ("tiny:merges=50000,embd=48,layers=1,heads=1", dict(live_tokenizer=True)),
])
def test_formulas_have_full_shape_if_and_two_index_row_reads(spec, opts):
    bad = offenders(build_book(load_model(spec), BuildOptions(**opts)))
    assert not bad, bad[:5]
