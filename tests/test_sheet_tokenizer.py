"""The live tokenizer: the sheet turns a new prompt into exactly tiktoken's GPT-2 token ids, in every engine.

Workbooks: the tokenizer alone (prompt tab + chars, pretokens, bpe, tokens + data tabs, built by the same
functions build_book calls) for the corpus runs, so that hundreds of prompts recalculate in seconds; a whole
tiny model for the prediction. Expected ids come from tiktoken built offline from the local GPT-2 files
(the whole vocabulary, or the 256 bytes + the first K merges), never from xlgpt's own tokenizer.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import regex

from conftest import ENGINES, needs_gnumeric, needs_libreoffice
from corpus import CORPUS, SUBSET, long_words
from xlgpt.engines import defined_names, open_workbook, read_name
from xlgpt.engines.refs import parse_range
from xlgpt.layout import Layout, Tab
from xlgpt.model import load_model
from xlgpt.reference import gpt2
from xlgpt.stages import BuildOptions, build_book, make_layout
from xlgpt.stages.data import display, vocab_tab, vocab_texts
from xlgpt.stages.tok_data import NO_MERGE, build_pair_hash, bytes_tab
from xlgpt.stages.tok_decode import TokenText
from xlgpt.stages.tokenizer import live_tokenizer
from xlgpt.stages.tokens import prompt_tab
from xlgpt.tokenizer import GPT2_PATTERN, Tokenizer, gpt2_files_dir
from xlgpt.unicode_classes import char_class
from xlgpt.xlsx.book import Book, Formula, Range, col_letter
from xlgpt.xlsx.writer import write_book

tiktoken = pytest.importorskip("tiktoken")
import tiktoken.load  # noqa: E402

CUT = 500  # merges in the cut vocabulary


# ---- expectations ---------------------------------------------------------------------------------------------
_ENCODINGS: dict = {}


def encoding(k: int | None = None):
    """tiktoken's GPT-2 from the local files; k: only the 256 bytes and the first k merges."""
    if k not in _ENCODINGS:
        d = gpt2_files_dir()
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(d / "vocab.bpe"),
                                                               encoder_json_file=str(d / "encoder.json"))
        if k is not None:
            ranks = {b: r for b, r in ranks.items() if r < 256 + k}
        eot = 50256 if k is None else 256 + k
        _ENCODINGS[k] = tiktoken.Encoding(name=f"gpt2-cut{k}", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                          special_tokens={"<|endoftext|>": eot})
    return _ENCODINGS[k]


def expected(text: str, enc, lay: Layout, bos: bool) -> tuple[str, list[int]]:
    """(status kind, ids) in the order the sheet checks its limits ("" = fine)."""
    ids = ([enc.eot_token] if bos else []) + enc.encode_ordinary(text)
    pieces = regex.findall(GPT2_PATTERN, text)
    if len(text) > lay.max_chars:  # LibreOffice, IronCalc and formulas count code points
        return "chars", ids
    if not ids:
        return "empty", ids
    if len(pieces) > lay.N:
        return "pretokens", ids
    if max([len(p.encode()) for p in pieces] + [0]) > lay.max_word_bytes:
        return "word", ids
    if len(ids) > lay.N:
        return "tokens", ids
    return "", ids


STATUS_WORDS = {"chars": "characters long", "empty": "is empty", "pretokens": "words and signs",
                "word": "A word is too long", "tokens": "tokens but the context holds"}


def status_kind(status) -> str:
    if status in ("", None):
        return ""
    for kind, words in STATUS_WORDS.items():
        if words in str(status):
            return kind
    return f"? {status!r}"


# ---- workbooks ----------------------------------------------------------------------------------------------------
BUILD_PROMPT = "Tuesday's funology!"  # the prompt written into the workbooks (several merges per word)


def token_book(path: Path, k: int | None, context: int, max_word_bytes: int, max_chars: int,
               decode_ids: list[int] | None = None, prompt: str = BUILD_PROMPT):
    """A workbook with the prompt tab, the live tokenizer and the vocabulary tab only; decode_ids: also an `ids`
    tab of input ids and the tokenizer's decode block for each (their texts are the name test_texts)."""
    tok = Tokenizer.gpt2() if k is None else Tokenizer.gpt2().cut(k)
    model = load_model(f"tiny:layers=1,heads=1,embd=4,merges={50000 if k is None else k}")
    opts = BuildOptions(prompt=prompt, context=context, max_word_bytes=max_word_bytes, max_chars=max_chars)
    lay = make_layout(model, opts)
    book = Book()
    ptab = prompt_tab(book, lay, opts)
    token_text = live_tokenizer(book, lay, tok, ptab, prompt, False)
    vocab_tab(book, lay, tok, vocab_texts(tok))
    if decode_ids:
        ws = book.sheet("ids")
        for i, v in enumerate(decode_ids):
            ws.write(i + 1, 1, v)
        cells = [Range("ids", i + 1, 1, i + 1, 1) for i in range(len(decode_ids))]
        texts = token_text.block(Tab(book, "decode"), cells)
        book.define("test_texts", Range(texts[0].sheet, texts[0].r1, texts[0].c1, texts[-1].r1, texts[0].c1))
    write_book(book, path)
    return lay, book


class Runner:
    """One workbook loaded once in one engine; set the prompt (and bos), recalculate, read the tokens."""

    def __init__(self, path, engine: str):
        self.names = defined_names(path)
        t0 = time.monotonic()
        self.session = open_workbook(path, engine)
        self.load_seconds = time.monotonic() - t0
        self.engine = engine
        self.bos = False
        self.times: list[float] = []

    def read(self, name: str):
        return read_name(self.session, self.names, name)

    def read_many(self, names: list[str]) -> dict:
        """Several names with one read per sheet (each read is a round trip to LibreOffice)."""
        by_sheet: dict[str, list] = {}
        for name in names:
            sheet, ref = self.names[name]
            r1, c1, r2, c2 = parse_range(ref)
            by_sheet.setdefault(sheet, []).append((name, r1, c1, r2, c2))
        out = {}
        for sheet, items in by_sheet.items():
            R1, C1 = min(i[1] for i in items), min(i[2] for i in items)
            R2, C2 = max(i[3] for i in items), max(i[4] for i in items)
            box = self.session.read(sheet, f"{col_letter(C1)}{R1}:{col_letter(C2)}{R2}")
            for name, r1, c1, r2, c2 in items:
                out[name] = box[r1 - R1:r2 - R1 + 1, c1 - C1:c2 - C1 + 1]
        return out

    def set(self, name: str, value) -> None:
        sheet, ref = self.names[name]
        self.session.set_cell(sheet, ref, value)

    def tokenize(self, text: str | None, bos: bool = False) -> dict:
        """text None: read what the workbook computed when it was loaded (its first evaluation)."""
        if text is not None:
            self.set("prompt", text)
            if bos != self.bos:
                self.set("bos", bool(bos))
                self.bos = bos
            t0 = time.monotonic()
            self.session.recalc()
            self.times.append(time.monotonic() - t0)
        v = self.read_many(["prompt", "status", "n_tokens", "tokens_ids", "tokens_text"])
        n = v["n_tokens"][0, 0]
        return {"n": int(n) if isinstance(n, float) else n,
                "ids": [int(x) if isinstance(x, float) else x for x in v["tokens_ids"][:, 0]],
                "text": list(v["tokens_text"][:, 0]), "status": v["status"][0, 0], "held": v["prompt"][0, 0]}

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_prompt(run: Runner, text: str | None, enc, lay: Layout, tok_texts: list[str] | None, bos: bool = False):
    """One prompt (None: the one the workbook was loaded with); returns what is wrong, or None. The expectation is
    for the text the prompt cell holds: LibreOffice's UNO setString turns "\r\n" into "\n", and a tab into "\x01"
    in multi-line text."""
    got = run.tokenize(text, bos)
    held = got["held"]
    kind, ids = expected(held, enc, lay, bos)
    where = f"{run.engine} {text!r} (bos={bos})" + (f" held as {held!r}" if held != text else "")
    if status_kind(got["status"]) != kind:
        return f"{where}: status {got['status']!r}, expected kind {kind!r}"
    if kind in ("", "tokens"):
        N = lay.N
        if got["n"] != len(ids):
            return f"{where}: n_tokens {got['n']}, expected {len(ids)}"
        pad = enc.eot_token
        want = (ids + [pad] * N)[:N]
        if got["ids"] != want:
            return f"{where}: ids {got['ids']}, expected {want}"
        if tok_texts is not None:
            want_text = [tok_texts[i] for i in ids[:N]] + [""] * (N - min(len(ids), N))
            if got["text"] != want_text:
                return f"{where}: texts {got['text']}, expected {want_text}"
    return None


def run_corpus(run: Runner, prompts, enc, lay, tok_texts=None, bos_every: int = 0) -> list[str]:
    bad = []
    for i, text in enumerate(prompts):
        bos = bool(bos_every) and i % bos_every == 0 and text is not None
        problem = check_prompt(run, text, enc, lay, tok_texts, bos)
        if problem:
            bad.append(problem)
    return bad


def corpus_failures(path, engine: str, prompts, k: int | None, lay, bos_every: int) -> list[str]:
    """Type each prompt into one loaded workbook; what went wrong (tiktoken with the full or K-merge vocabulary)."""
    with Runner(path, engine) as run:
        return run_corpus(run, prompts, encoding(k), lay, display_texts(k), bos_every=bos_every)


def display_texts(k: int | None) -> list[str]:
    tok = Tokenizer.gpt2() if k is None else Tokenizer.gpt2().cut(k)
    return [display(tok.token_text(i)) for i in range(tok.vocab_size)]


# corpus workbooks: context 12, 24 bytes per word, 40 characters (longer prompts check the limits; past the
# context the first 12 ids are still compared)
CORPUS_LIMITS = dict(context=12, max_word_bytes=24, max_chars=40)


@pytest.fixture(scope="module")
def full_book(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "full.xlsx"
    lay, _ = token_book(path, None, **CORPUS_LIMITS)
    return path, lay


@pytest.fixture(scope="module")
def cut_book(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "cut.xlsx"
    lay, _ = token_book(path, CUT, **CORPUS_LIMITS)
    return path, lay


def corpus_for(lay: Layout) -> list[str | None]:
    """None first: the prompt as evaluated on loading (IronCalc's first evaluation differs from later ones)."""
    return [None] + CORPUS + long_words(lay.max_word_bytes) + ["x" * (lay.max_chars + 1), "ab " * (lay.N + 1)]


# ---- pure Python checks of the sheet's tables --------------------------------------------------------------------
def test_pair_hash_finds_every_merge_and_nothing_else():
    tok = Tokenizer.gpt2()
    pairs = [(tok.encoder[a], tok.encoder[b]) for a, b in tok.merges]
    table = build_pair_hash(pairs)
    assert all(table.rank(a, b) == r for r, (a, b) in enumerate(pairs))
    rng = np.random.default_rng(0)
    known = set(pairs)
    for a, b in rng.integers(0, tok.vocab_size, size=(20000, 2)):
        if (a, b) not in known:
            assert table.rank(int(a), int(b)) == NO_MERGE
    assert table.size < 2.6 * len(pairs) + 20
    assert build_pair_hash([]).rank(1, 2) == NO_MERGE


def test_unicode_classes_match_the_pattern():
    cases = {"a": 1, "é": 1, "ж": 1, "中": 1, "𝔘": 1, "1": 2, "٣": 2, "½": 2, "Ⅻ": 2, " ": 3, "\t": 3, "\n": 3,
             "\u00a0": 3, "\u3000": 3, "\u0085": 3, "'": 4, "!": 4, "😀": 4, "\u0301": 4, "\u200d": 4}
    for ch, cls in cases.items():
        assert char_class(ord(ch)) == cls, ch


# ---- IronCalc: the whole corpus --------------------------------------------------------------------------------
def test_corpus_ironcalc_full_vocabulary(full_book):
    path, lay = full_book
    bad = corpus_failures(path, "ironcalc", corpus_for(lay), None, lay, bos_every=7)
    assert not bad, "\n".join(bad[:20])


def test_corpus_ironcalc_cut_vocabulary(cut_book):
    path, lay = cut_book
    bad = corpus_failures(path, "ironcalc", corpus_for(lay), CUT, lay, bos_every=5)
    assert not bad, "\n".join(bad[:20])


# ---- LibreOffice: the whole corpus, one load ----------------------------------------------------------------------
@needs_libreoffice
def test_corpus_libreoffice(full_book):
    path, lay = full_book
    # LibreOffice's UNO setString("") leaves the cell as it was: the empty prompt is checked by IronCalc
    # and formulas (a user deleting the prompt in LibreOffice is not affected)
    prompts = [p for p in corpus_for(lay) if p != ""]  # (None: the loaded prompt)
    bad = corpus_failures(path, "libreoffice", prompts, None, lay, bos_every=9)
    assert not bad, "\n".join(bad[:20])


# ---- formulas: a representative subset, small limits --------------------------------------------------------------
def test_subset_formulas(tmp_path):
    lay, _ = token_book(tmp_path / "small.xlsx", 50, context=4, max_word_bytes=6, max_chars=8, prompt="it's ok")
    bad = corpus_failures(tmp_path / "small.xlsx", "formulas", [None] + SUBSET, 50, lay, bos_every=2)
    assert not bad, "\n".join(bad)


# ---- Gnumeric: a fifth of the corpus and the subset (the whole corpus, ~75 s, under -m slow), one load -------------
@needs_gnumeric
def test_corpus_gnumeric_sample(full_book):
    path, lay = full_book
    prompts = corpus_for(lay)
    bad = corpus_failures(path, "gnumeric", prompts[::5] + SUBSET + prompts[-2:], None, lay, bos_every=3)
    assert not bad, "\n".join(bad[:20])


@pytest.mark.slow
@needs_gnumeric
def test_corpus_gnumeric(full_book):
    path, lay = full_book
    bad = corpus_failures(path, "gnumeric", corpus_for(lay), None, lay, bos_every=11)
    assert not bad, "\n".join(bad[:20])


# ---- the default limits (128 bytes per word, 8 x context characters), and decoding ids back to text --------------
def partial_utf8_ids(tok: Tokenizer, n: int) -> list[int]:
    out = []
    for i in range(tok.vocab_size):
        try:
            tok.token_bytes(i).decode("utf-8")
        except UnicodeDecodeError:
            out.append(i)
    rng = np.random.default_rng(1)
    return [int(i) for i in rng.choice(out, size=min(n, len(out)), replace=False)]


def decode_sample(tok: Tokenizer) -> list[int]:
    """About 220 ids: the special ones, the longest, 100 that are part of a UTF-8 character, 100 at random."""
    rng = np.random.default_rng(0)
    longest = sorted(range(tok.vocab_size - 1), key=lambda i: -len(tok.token_bytes(i)))[:5]
    return sorted(set([0, 1, 32, 94, 187, 188, 198, 220, 255, 256, 628, 50255, 50256, *longest]
                      + partial_utf8_ids(tok, 100) + [int(i) for i in rng.integers(0, tok.vocab_size, 100)]))


def test_default_limits_and_decoding_ironcalc(tmp_path):
    tok = Tokenizer.gpt2()
    ids = decode_sample(tok)
    path = tmp_path / "default.xlsx"
    lay, book = token_book(path, None, context=16, max_word_bytes=128, max_chars=0, decode_ids=ids)
    assert (lay.N, lay.max_word_bytes, lay.max_chars) == (16, 128, 128)
    formulas, arrays = count_cells(book, {"chars", "pretokens", "bpe", "tokens"})
    assert formulas < 40_000 and arrays < 300_000, (formulas, arrays)
    with Runner(path, "ironcalc") as run:
        got = list(run.read("test_texts")[:, 0])
        want = [display(tok.token_text(i)) for i in ids]
        bad = [f"decode {i}: {g!r} != {w!r}" for i, g, w in zip(ids, got, want) if g != w]
        prompts = [None, "If today is Tuesday, tomorrow is", "a" * 128, "z" * 129, "😀" * 32, " " + "q" * 127,
                   "Mike pulls out his", "x" * 129, "ab " * 17, "y" * 120 + " end"]
        bad += run_corpus(run, prompts, encoding(None), lay, display_texts(None))
    assert not bad, "\n".join(bad[:20])


def count_cells(book: Book, sheets) -> tuple[int, int]:
    formulas = arrays = 0
    for s in book.sheets:
        if s.name in sheets:
            formulas += sum(1 for v, _ in s.cells.values() if isinstance(v, Formula))
            arrays += sum(a.rng.shape[0] * a.rng.shape[1] for a in s.arrays)
    return formulas, arrays


def decode_book(path: Path, tok: Tokenizer, ids: list[int]):
    """Input cells holding ids, and the tokenizer's decode block for each (no tokenizer tabs)."""
    model = load_model("tiny:layers=1,heads=1,embd=4,merges=64")
    lay = make_layout(model, BuildOptions(prompt="Hi", context=4))
    book = Book()
    ws = book.sheet("ids")
    for i, v in enumerate(ids):
        ws.write(i + 1, 1, v)
    bytes_tab(book, lay, tok)
    vocab_tab(book, lay, tok, vocab_texts(tok))
    texts = TokenText(lay, tok).block(Tab(book, "decode"), [Range("ids", i + 1, 1, i + 1, 1) for i in range(len(ids))])
    book.define("test_texts", Range(texts[0].sheet, texts[0].r1, texts[0].c1, texts[-1].r1, texts[0].c1))
    write_book(book, path)


@pytest.mark.parametrize("engine", ENGINES)
def test_decode_every_id_of_the_cut_vocabulary(tmp_path, engine):
    tok = Tokenizer.gpt2().cut(50)
    ids = list(range(tok.vocab_size))
    path = tmp_path / "decode_cut.xlsx"
    decode_book(path, tok, ids)
    with open_workbook(path, engine) as s:
        got = list(read_name(s, path, "test_texts")[:, 0])
    want = [display(tok.token_text(i)) for i in ids]
    bad = [(i, g, w) for i, g, w in zip(ids, got, want) if g != w]
    assert not bad, bad[:10]


# ---- the whole model follows the new prompt --------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_prediction_follows_the_typed_prompt(tmp_path, engine):
    K, N = 200, 8
    model = load_model(f"tiny:layers=1,heads=1,embd=4,merges={K},ctx=16")
    opts = BuildOptions(prompt="the cat sat", context=N, top_k=3)
    path = tmp_path / "model.xlsx"
    write_book(build_book(model, opts), path)
    enc = encoding(K)
    texts = display_texts(K)
    with Runner(path, engine) as run:
        for text, bos in [(None, False), ("it's ok", True), ("Hello  world", False)]:
            got = run.tokenize(text, bos)
            ids = ([enc.eot_token] if bos else []) + enc.encode_ordinary(text or opts.prompt)
            assert got["status"] == "" and got["n"] == len(ids), (text, got)
            assert got["ids"][:len(ids)] == ids
            ref = gpt2(got["ids"], model.params, model.config, n_real=len(ids))
            want = int(ref["next_token_id"][0, 0])
            assert int(run.read("next_token_id")[0, 0]) == want
            assert run.read("next_token")[0, 0] == texts[want]
            top = [int(v) for v in run.read("top_ids")[:, 0]]
            assert [run.read("top_tokens")[i, 0] for i in range(3)] == [texts[i] for i in top]
        # past a limit the prediction shows the status instead of a token
        got = run.tokenize("😀😀😀")  # one pre-token, 12 bytes: more tokens than the context
        assert status_kind(got["status"]) == "tokens"
        assert run.read("next_token")[0, 0] == got["status"]
