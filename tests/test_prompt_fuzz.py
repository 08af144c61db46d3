"""Random prompts (controls, lone surrogates, 4-byte characters, Excel's `_xHHHH_` escapes): each is either
refused by the build with one XlgptError before anything is written, or stored in the .xlsx so that it
reads back exactly and the sheet's own tokenizer (IronCalc) gives exactly the Python tokenizer's tokens."""
from __future__ import annotations

import random
import re

import openpyxl
import pytest

from xlgpt.build import build
from xlgpt.errors import XlgptError
from xlgpt.model import load_model
from xlgpt.recalc import open_book, set_prompt
from xlgpt.stages import BuildOptions, build_book
from xlgpt.stages.options import check_text
from xlgpt.xlsx.book import Book
from xlgpt.xlsx.writer import write_book

N_PROMPTS = 50
MAX_BYTES = 24  # every prompt fits the workbook's context of 24 tokens (at worst one token per byte)
ISSUE_PROMPT = "Mike is quick.\r\nHe moves"
SPECIALS = ["\r\n", "\r", "\t", "\n", "_x0041_", "_x005F_", "\ufffe", "\uffff", "\u2028", "\x00", "\x85", " ", "'s"]


def _char(rng: random.Random) -> str:
    k = rng.random()
    if k < 0.25:
        return chr(rng.randint(0x20, 0x7E))
    if k < 0.45:
        return chr(rng.choice([*range(0x00, 0x20), *range(0x7F, 0xA0)]))
    if k < 0.52:
        return chr(rng.randint(0xD800, 0xDFFF))  # a lone surrogate
    if k < 0.72:
        return chr(rng.choice([rng.randint(0x1F300, 0x1FAFF), rng.randint(0x10000, 0x10FFFF)]))  # 4 UTF-8 bytes
    if k < 0.88:
        c = rng.randint(0xA0, 0xFFFD)
        return chr(c) if not 0xD800 <= c <= 0xDFFF else "é"
    return rng.choice(SPECIALS)


def prompts(seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    out = []
    while len(out) < N_PROMPTS:
        p = "".join(_char(rng) for _ in range(rng.randint(1, 6)))
        if len(p.encode("utf-8", "surrogatepass")) <= MAX_BYTES:
            out.append(p)
    return out


def unstorable(p: str) -> bool:
    """The rule, stated independently of the code: what XML 1.0 cannot carry at all, and Excel's escapes."""
    return bool(re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]|_x[0-9A-Fa-f]{4}_", p))


PROMPTS = prompts()
STORED = [p for p in PROMPTS if not unstorable(p)]


def test_the_fuzz_covers_both_outcomes():
    refused = [p for p in PROMPTS if unstorable(p)]
    assert len(STORED) >= 15 and len(refused) >= 15
    assert any(len(c.encode("utf-8", "surrogatepass")) == 4 for p in STORED for c in p)
    assert any("\r" in p for p in STORED) and any(0x7F <= ord(c) <= 0x9F for p in STORED for c in p)


@pytest.mark.parametrize("i", [i for i, p in enumerate(PROMPTS) if unstorable(p)])
def test_refused_at_build(tmp_path, i):
    out = tmp_path / "out.xlsx"
    with pytest.raises(XlgptError) as e:
        build("tiny", BuildOptions(prompt=PROMPTS[i]), out, echo=None)
    assert "\n" not in str(e.value) and ("surrogate" in str(e.value) or "cannot be stored" in str(e.value))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def read_back(tmp_path_factory):
    """Every storable prompt written as a cell and read back from the file by IronCalc and openpyxl."""
    path = tmp_path_factory.mktemp("fuzz") / "texts.xlsx"
    book = Book()
    ws = book.sheet("texts")
    for k, p in enumerate(STORED, start=1):
        check_text(p)  # the build accepts it
        ws.write(k, 1, p)
    write_book(book, path)
    from xlgpt.engines import open_workbook

    with open_workbook(path, "ironcalc") as s:
        ironcalc = [str(v) for v in s.read("texts", f"A1:A{len(STORED)}").ravel()]
    sheet = openpyxl.load_workbook(path)["texts"]
    return ironcalc, [sheet.cell(k, 1).value for k in range(1, len(STORED) + 1)]


def test_stored_prompts_read_back_exactly(read_back):
    ironcalc, openpyxl_texts = read_back
    assert [ascii(t) for t in ironcalc] == [ascii(p) for p in STORED]
    assert [ascii(t) for t in openpyxl_texts] == [ascii(p) for p in STORED]


def test_the_sheet_tokenizes_what_python_does(tmp_path, read_back):
    model = load_model("tiny")
    tok = model.tokenizer
    path = tmp_path / "fuzz.xlsx"
    write_book(build_book(model, BuildOptions(prompt=ISSUE_PROMPT, context=MAX_BYTES)), path)
    with open_book(path, "ironcalc") as wb:
        def sheet_tokens() -> list[int]:
            assert wb.value("status") in (None, "")
            n = int(wb.numbers("n_tokens")[0, 0])
            return [int(v) for v in wb.numbers("tokens_ids").ravel()[:n]]

        assert sheet_tokens() == tok.encode(ISSUE_PROMPT)  # the CR survived the file
        bad = []
        for text, want in zip(read_back[0], STORED):  # each text as read back from the file
            set_prompt(wb, text)
            if sheet_tokens() != tok.encode(want):
                bad.append(ascii(want))
    assert not bad, bad
