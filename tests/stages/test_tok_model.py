"""Every formula cell of the live tokenizer (chars, pretokens, bpe, tokens, the status, the decode blocks) carries the
value tok_model expects, and IronCalc and LibreOffice compute exactly that value, for prompts of every kind and for
each limit the prompt can break.

A workbook is written once; each prompt is typed into it (and bos set), recalculated, and every formula cell of the
tokenizer tabs is compared with the expectations of a book built in memory for that prompt (same layout, same
addresses). build_book itself refuses prompts past the context, so the tokenizer tabs are built by the functions
build_book calls (tokenizer_book).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_libreoffice
from corpus import CORPUS, SUBSET, long_words
from xlgpt.engines import open_workbook
from xlgpt.engines.base import CellError
from xlgpt.layout import BPE, CHARS, PREDICTION, PRETOKENS, PROMPT, TOKENS, Tab
from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book, make_layout
from xlgpt.stages.data import display, vocab_tab, vocab_texts
from xlgpt.stages.tok_decode import TokenText
from xlgpt.stages.tok_model import STATUS, decode_steps, tokenizer_steps
from xlgpt.stages.tokenizer import live_tokenizer
from xlgpt.stages.tokens import prompt_tab
from xlgpt.tokenizer import EOT, Tokenizer
from xlgpt.xlsx.book import NOVALUE, Book, col_letter
from xlgpt.xlsx.writer import write_book

TOKENIZER_TABS = (PROMPT, CHARS, PRETOKENS, BPE, TOKENS)
LIMITS = dict(context=8, max_word_bytes=12, max_chars=24)  # small: the corpus runs in seconds
M, P, N = LIMITS["max_word_bytes"], LIMITS["max_chars"], LIMITS["context"]

# about 30 corpus strings: ASCII, contractions, numbers, punctuation, whitespace, accents, scripts, emoji
PROMPTS = [
    "Hello, world!", "it's", "we'll", "I'M 42!", "'s's", "rock 'n' roll", "1,000,000", "١٢٣", "$100", "a->b",
    "“smart” ‘quotes’", "a  b", "   ", "a\n\nb", "\t x", "x\t", "\u00a0x", "a\u3000b", " \n", "café", "Straße",
    "Привет мир", "你好世界", "日本 and 中国", "😀", "👍🏽", "a😀b", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "e\u0301", "Ｆｕｌｌｗｉｄｔｈ",
]
assert set(PROMPTS) <= set(CORPUS + SUBSET)
# a word at the byte limit and one over; each limit the status reports (chars, empty, pre-tokens, word, tokens)
LIMIT_PROMPTS = long_words(M) + ["x" * (P + 1), "é" * 13 + " ab", "", "a b c d e f g h i", "a,b,c,d,e", "😀😀😀"]
BOS_PROMPTS = {"it's", "", "😀", "a,b,c,d,e"}  # also typed with bos TRUE


def tokenizer_book(model, prompt: str, bos: bool = False, tok: Tokenizer | None = None, **limits) -> Book:
    """The prompt tab, the live tokenizer and the vocab tab, laid out as build_book lays them out."""
    tok = tok or model.tokenizer
    opts = BuildOptions(prompt=prompt, bos=bos, **(limits or LIMITS))
    lay = make_layout(model, opts)
    book = Book()
    ptab = prompt_tab(book, lay, opts)
    live_tokenizer(book, lay, tok, ptab, prompt, bos)
    vocab_tab(book, lay, tok, vocab_texts(tok))
    return book


def without_eot(tok: Tokenizer) -> Tokenizer:
    enc = {s: i for s, i in tok.encoder.items() if s != EOT}
    assert sorted(enc.values()) == list(range(len(enc)))
    return Tokenizer(encoder=enc, merges=tok.merges, eot_id=None, name=tok.name + "-no-eot")


def expectations(book: Book, sheets) -> list:
    """(sheet, range, expected values) of every formula on those sheets."""
    return [(s, rng, v) for s, rng, v in book.formula_cells() if s in sheets]


def missing(book: Book, sheets) -> list[str]:
    return [f"{s}!{rng.a1}" for s, rng, v in expectations(book, sheets) if any(x is NOVALUE for x in v.flat)]


# ---- comparing with an engine ---------------------------------------------------------------------------------------
def same(want, got) -> bool:
    if want in ("", None) and got in ("", None):
        return True
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(want - got) <= 1e-12
    if isinstance(want, CellError) or isinstance(got, CellError):
        return str(want) == str(got)
    return want == got


def sheet_values(session, exp) -> dict:
    """Each sheet's formula cells read at once: {sheet: (first row, first column, values)}."""
    boxes: dict[str, list[int]] = {}
    for s, rng, _ in exp:
        b = boxes.setdefault(s, [rng.r1, rng.c1, rng.r2, rng.c2])
        b[:] = [min(b[0], rng.r1), min(b[1], rng.c1), max(b[2], rng.r2), max(b[3], rng.c2)]
    return {s: (r1, c1, session.read(s, f"{col_letter(c1)}{r1}:{col_letter(c2)}{r2}"))
            for s, (r1, c1, r2, c2) in boxes.items()}


def mismatches(session, exp, where: str = "") -> tuple[int, list[str]]:
    """How many cells were compared, and the ones the engine computes differently."""
    got = sheet_values(session, exp)
    n, bad = 0, []
    for s, rng, want in exp:
        r0, c0, box = got[s]
        for (i, j), w in np.ndenumerate(want):
            n += 1
            g = box[rng.r1 - r0 + i, rng.c1 - c0 + j]
            if not same(w, g):
                bad.append(f"{where}{s}!{rng.cell(i, j).a1}: expected {w!r}, got {g!r}")
    return n, bad


def set_name(session, book: Book, name: str, value) -> None:
    rng = book[name]
    session.set_cell(rng.sheet, rng.a1, value)


def run_prompts(session, model, prompts, tok=None) -> tuple[int, list[str]]:
    """Type each (prompt, bos) in (None: the workbook as it was loaded, bos FALSE), recalculate and compare every
    tokenizer formula with the expectations for the text the prompt cell holds (LibreOffice's setString turns a
    tab into \x01 in text of several lines)."""
    total, bad, bos_now = 0, [], False
    names = tokenizer_book(model, "", False, tok)  # (the addresses of prompt and bos)
    for prompt, bos in prompts:
        if prompt is not None:
            set_name(session, names, "prompt", prompt)
            if bos != bos_now:
                set_name(session, names, "bos", bos)
                bos_now = bos
            session.recalc()
        held = session.read(PROMPT, names["prompt"].a1)[0, 0]
        book = tokenizer_book(model, held or "", bos, tok)
        n, b = mismatches(session, expectations(book, TOKENIZER_TABS), f"{prompt!r} bos={bos}: ")
        total += n
        bad += b
    return total, bad


def corpus() -> list[tuple[str, bool]]:
    return [(p, False) for p in PROMPTS + LIMIT_PROMPTS] + [(p, True) for p in sorted(BOS_PROMPTS)]


# ---- the model itself --------------------------------------------------------------------------------------------
def status_kind(text: str, tok: Tokenizer, bos: bool) -> str:
    """The first limit a prompt breaks, in the sheet's order, from Python's tokenizer ("" = none)."""
    pieces = tok.pretokenize(text)
    n = len(tok.encode(text)) + bool(bos and tok.eot_id is not None)
    return next((kind for kind, broken in [
        ("chars", len(text) > P), ("bos", bos and tok.eot_id is None), ("empty", n == 0),
        ("pretokens", len(pieces) > N),
        ("word", any(len(p.encode()) > M for p in pieces)), ("tokens", n > N)] if broken), "")


def test_model_tokens_and_status():
    model = load_model("tiny:merges=500")
    tok = model.tokenizer
    lay = make_layout(model, BuildOptions(**LIMITS))
    for text, bos in corpus() + [("", True)]:
        m = tokenizer_steps(text, bos, lay, tok)
        kind = status_kind(text, tok, bos)
        assert m.status_kind == kind, (text, m.status)
        assert (m.status == "") == (kind == ""), text
        if kind in ("", "tokens"):
            ids = [tok.eot_id] * bos + tok.encode(text)
            assert m.tokens.n_tokens == len(ids) and m.tokens.ids == (ids + [tok.eot_id] * N)[:N], text
            assert [m.pre.text[t] for t in range(m.pre.count)] == tok.pretokenize(text)
        if kind != "chars":
            assert bytes(b for b in m.chars.byte if b >= 0) == text.encode()
    assert tokenizer_steps("", True, lay, without_eot(tok)).status_kind == "bos"
    msg = dict(STATUS)["word"].format(longest="é" * 13, bytes=26, M=M)
    assert tokenizer_steps("é" * 13 + " ab", False, lay, tok).status == msg


def test_model_decodes_as_python():
    tok = Tokenizer.gpt2()
    ids = [i for i in range(tok.vocab_size) if i % 97 == 0 or len(tok.token_bytes(i)) < 2] + [tok.eot_id]
    D = max(len(tok.token_bytes(i)) for i in range(tok.vocab_size - 1))
    m = decode_steps(tok, ids, D)
    assert m.text == [display(tok.token_text(i)) for i in ids]
    by_bytes = {tok.token_bytes(i): i for i in range(tok.vocab_size)}
    m = decode_steps(tok, [by_bytes[b"\xe2\x80"], by_bytes[b" \xe2"], by_bytes[b"\x82\xac"]], 3)
    assert m.shown == [[65533, -1, -1], [32, 65533, -1], [65533, 65533, -1]], m.shown  # one U+FFFD per subpart
    assert m.plen == [[2, 1, 1], [1, 1, 1], [1, 1, 1]] and m.need == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]
    assert m.piece[0] == ["\ufffd", "", ""] and m.text[2] == "\ufffd\ufffd"


# ---- (1) every formula of the tokenizer has an expectation -------------------------------------------------------
def test_every_tokenizer_formula_has_an_expectation():
    model = load_model("tiny:merges=500")
    small = dict(max_word_bytes=M)
    builds = [("it's 42 café", {}), (" a\n\tb", small), ("你好😀", small),  # through build_book
              ("ab ééé", dict(max_word_bytes=6)), ("ab éééé", dict(max_word_bytes=6)),  # a word at and over M
              ("hello", dict(max_chars=4, **small))]  # too many characters
    for prompt, limits in builds:
        book = build_book(model, BuildOptions(prompt=prompt, context=16, **limits))
        assert not missing(book, TOKENIZER_TABS), (prompt, missing(book, TOKENIZER_TABS)[:5])
    book = build_book(model, BuildOptions(prompt="it's", context=N, live_tokenizer=False))
    assert not missing(book, (PROMPT, TOKENS))
    model = load_model("tiny")
    for prompt in LIMIT_PROMPTS:  # past a limit (build_book refuses some of these)
        assert not missing(tokenizer_book(model, prompt), TOKENIZER_TABS), prompt
    assert not missing(tokenizer_book(model, "x", True, without_eot(model.tokenizer)), TOKENIZER_TABS)


# ---- (2) IronCalc computes every expected value ------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["tiny", "tiny:merges=500"])
def test_ironcalc_computes_the_expectations(tmp_path, spec):
    model = load_model(spec)
    path = tmp_path / "tok.xlsx"
    write_book(tokenizer_book(model, "it's café"), path)
    with open_workbook(path, "ironcalc") as s:
        n, bad = run_prompts(s, model, [(None, False)] + corpus())
    assert n and not bad, "\n".join(bad[:20])


def test_ironcalc_without_eot(tmp_path):
    model = load_model("tiny")
    tok = without_eot(model.tokenizer)
    path = tmp_path / "no_eot.xlsx"
    write_book(tokenizer_book(model, "ab", tok=tok), path)
    with open_workbook(path, "ironcalc") as s:
        n, bad = run_prompts(s, model, [(None, False), ("ab", True), ("", True), ("it's", False)], tok=tok)
    assert n and not bad, "\n".join(bad[:20])


def test_ironcalc_whole_workbook(tmp_path):
    """build_book's workbook: the tokenizer tabs and the decode blocks (tokens tab, prediction tab) as loaded."""
    model = load_model("tiny:merges=500")
    opts = BuildOptions(prompt="Hello, it's 😀", context=16, top_k=5)
    book = build_book(model, opts)  # the prediction's decode block states the reference's ids
    block = [(s, r, v) for s, r, v in expectations(book, {PREDICTION}) if r.c1 >= 19]  # the decode block
    assert block and not missing(book, TOKENIZER_TABS) and all(NOVALUE not in v.flat for _, _, v in block)
    write_book(book, tmp_path / "whole.xlsx")
    with open_workbook(tmp_path / "whole.xlsx", "ironcalc") as s:
        n, bad = mismatches(s, expectations(book, TOKENIZER_TABS) + block)
    assert not bad, "\n".join(bad[:20])
    python = build_book(model, BuildOptions(prompt="it's", context=N, live_tokenizer=False))
    write_book(python, tmp_path / "python.xlsx")
    with open_workbook(tmp_path / "python.xlsx", "ironcalc") as s:
        n, bad = mismatches(s, expectations(python, (PROMPT, TOKENS)))
    assert n and not bad, "\n".join(bad[:20])


@pytest.mark.slow
def test_ironcalc_decodes_gpt2_ids_as_the_model(tmp_path):
    """Every cell of the decode block for 400 GPT-2 ids, 300 of them part of a UTF-8 character (about a minute:
    the vocab tab holds 50,257 rows)."""
    tok = Tokenizer.gpt2()
    partial = [i for i in range(tok.vocab_size) if tok.token_text(i) != tok.token_bytes(i).decode("utf-8", "ignore")]
    rng = np.random.default_rng(0)
    ids = sorted({*map(int, rng.choice(partial, 300, replace=False)), *map(int, rng.integers(0, tok.vocab_size, 100)),
                  0, 127, 255, tok.eot_id})
    model = load_model("tiny:layers=1,heads=1,embd=4")
    lay = make_layout(model, BuildOptions(prompt="Hi", context=4))
    book = Book()
    ws = book.sheet("ids")
    cells = [ws.write(k + 1, 1, v) for k, v in enumerate(ids)]
    vocab_tab(book, lay, tok, vocab_texts(tok))
    TokenText(lay, tok).block(Tab(book, "decode"), cells, ids=ids)
    exp = expectations(book, {"decode"})
    assert not any(NOVALUE in v.flat for _, _, v in exp)
    write_book(book, tmp_path / "decode.xlsx")
    with open_workbook(tmp_path / "decode.xlsx", "ironcalc") as s:
        n, bad = mismatches(s, exp)
    assert n > 200_000 and not bad, "\n".join(bad[:20])


# ---- (3) LibreOffice too -------------------------------------------------------------------------------------------
@needs_libreoffice
def test_libreoffice_computes_the_expectations(tmp_path):
    model = load_model("tiny:merges=500")
    path = tmp_path / "tok.xlsx"
    write_book(tokenizer_book(model, "a😀b"), path)
    prompts = [(None, False), ("it's 42", False), ("café  中文\n", False), ("é" * 13 + " ab", False),
               ("x" * (P + 1), True),
               ("😀😀😀", False)]
    with open_workbook(path, "libreoffice") as s:
        n, bad = run_prompts(s, model, prompts)
    assert n and not bad, "\n".join(bad[:20])
