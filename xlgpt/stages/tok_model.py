"""A Python model of the live tokenizer's steps: every value the chars, pretokens, bpe and tokens tabs, the status
cell and the decode blocks show, from the prompt, bos, the Layout and the Tokenizer (each formula's expectation).

Plain Python over the prompt, not an evaluation of the formulas: character classes and GPT-2's pattern by the
`regex` module, UTF-8 by Python's codec (errors="replace" for the pieces of a token), merges by the Tokenizer's ranks.
Where a limit cuts the prompt short the sheet's cells still show something, and so does the model (the first P
characters, the first M bytes of a word, the first N tokens of a pre-token).
Units are code points, as LibreOffice, IronCalc and formulas count them (Excel counts UTF-16 units).
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

import regex

from ..layout import Layout
from ..tokenizer import CHAR_BYTE, EOT, GPT2_PATTERN, Tokenizer
from .data import VISIBLE
from .tok_bpe import width
from .tok_data import NO_MERGE

_PATTERN = regex.compile(GPT2_PATTERN)
_CONTRACTION = regex.compile(r"'(?:re|ve|ll|s|t|m|d)")
_CLASSES = ((1, regex.compile(r"\p{L}")), (2, regex.compile(r"\p{N}")), (3, regex.compile(r"\s")))
SHORT = "LNSO"
REPLACEMENT = 0xFFFD


def char_class(ch: str) -> int:
    """1 letter, 2 number, 3 whitespace, 4 other: what GPT2_PATTERN asks of a character."""
    return next((c for c, p in _CLASSES if p.match(ch)), 4)


def visible(cp: int) -> int:
    """Control characters as their symbols ␀..␟ and ␡ (data.display of one character)."""
    return ord(VISIBLE[cp]) if cp in VISIBLE else cp


# ---- status ----------------------------------------------------------------------------------------------------------
# The status messages, in the order the sheet checks them. {fields} in braces: units, n_tokens, longest and bytes
# are the sheet's values (tokenizer.status_formula joins them in with &), P, M and N the workbook's limits.
STATUS = [
    ("chars", "The prompt is {units} characters long; this workbook reads at most {P} (rebuild with --max-chars)"),
    ("bos", "This vocabulary has no <|endoftext|>: set bos to FALSE"),
    ("empty", "The prompt is empty: type some text (or set bos to TRUE)"),
    ("pretokens", "The prompt has more than {N} words and signs, so more than {N} tokens: the context holds {N} "
                  "(rebuild with --context)"),
    ("word", "A word is too long: “{longest}” ({bytes} bytes); at most {M} UTF-8 bytes per word "
             "(rebuild with --max-word-bytes)"),
    ("tokens", "The prompt is {n_tokens} tokens but the context holds {N} (rebuild with --context {n_tokens})"),
]


# ---- chars ----------------------------------------------------------------------------------------------------------
@dataclass
class CharSteps:
    prompt_units: int
    n_chars: int
    n_bytes: int
    # units [P]
    unit_text: list[str]
    unit_code: list[int]
    unit_cp: list[int]
    unit_is_char: list[int]
    unit_count: list[int]
    # characters [P]
    shown: list[str]
    unit: list[int]  # 1-based unit of each character; prompt_units + 1 past the end
    cp: list[int]
    cls: list[int]
    letter: list[str]
    nb: list[int]
    boff: list[int]
    bytes4: list[list[int]]  # [P x 4], -1 past the character's length
    # bytes [4P]
    byte_char: list[int]
    byte: list[int]


def chars_steps(prompt: str, lay: Layout) -> CharSteps:
    P = lay.max_chars
    units = list(prompt)
    n_units = len(units)
    text = prompt[:P]
    n = len(text)
    code = [ord(units[i]) if i < n_units else -1 for i in range(P)]
    is_char = [1 if c >= 0 else 0 for c in code]
    count = list(accumulate(is_char))
    cp = [ord(text[k]) if k < n else -1 for k in range(P)]
    cls = [char_class(text[k]) if k < n else 0 for k in range(P)]
    enc = [text[k].encode("utf-8") if k < n else b"" for k in range(P)]
    nb = [len(e) for e in enc]
    boff = list(accumulate(nb, initial=0))[:P]
    data = b"".join(enc)
    byte_char = [k for k in range(P) for _ in range(nb[k])]
    byte_char += [-1] * (4 * P - len(byte_char))
    return CharSteps(
        prompt_units=n_units, n_chars=n, n_bytes=len(data),
        unit_text=[units[i] if i < n_units else "" for i in range(P)], unit_code=code, unit_cp=list(code),
        unit_is_char=is_char, unit_count=count,
        shown=[chr(visible(c)) if c >= 0 else "" for c in cp],
        unit=[k + 1 if k < n else n_units + 1 for k in range(P)], cp=cp, cls=cls,
        letter=[SHORT[c - 1] if c else "" for c in cls], nb=nb, boff=boff,
        bytes4=[[e[j] if j < len(e) else -1 for j in range(4)] for e in enc],
        byte_char=byte_char, byte=[data[g] if g < len(data) else -1 for g in range(4 * P)])


# ---- pretokens ------------------------------------------------------------------------------------------------------
@dataclass
class PretokenSteps:
    count: int
    overflow: bool
    max_bytes: int
    longest: str
    # the scan [P]
    run: list[int]
    contraction: list[int]
    match: list[int]
    # the pre-tokens [T]
    start: list[int]
    length: list[int]
    boff: list[int]
    blen: list[int]
    over: list[int]
    text: list[str]


def pretoken_steps(prompt: str, lay: Layout, ch: CharSteps) -> PretokenSteps:
    P, T, M = lay.max_chars, lay.N, lay.max_word_bytes
    n = ch.n_chars
    text = prompt[:n]
    run = [0] * (P + 1)
    for k in reversed(range(P)):
        if ch.cls[k]:
            run[k] = run[k + 1] + 1 if k + 1 < P and ch.cls[k + 1] == ch.cls[k] else 1
    contraction = [0] * P
    match = [0] * P
    for k in range(n):
        c = _CONTRACTION.match(text, k)
        contraction[k] = len(c.group()) if c else 0
        match[k] = len(_PATTERN.match(text, k).group())
    pieces = [(m.start(), m.end() - m.start()) for m in _PATTERN.finditer(text)]
    start, length, boff, blen, shown = [], [], [], [], []
    for t in range(T):
        s, L = pieces[t] if t < len(pieces) else (n, 0)
        start.append(s)
        length.append(L)
        boff.append(ch.boff[s] if L else ch.n_bytes)
        blen.append(len(text[s:s + L].encode("utf-8")))
        # the last pre-token's text runs to the end of the prompt (past P characters too)
        shown.append("" if not L else prompt[s:] if s + L >= n else text[s:s + L])
    over = [1 if b > M else 0 for b in blen]
    return PretokenSteps(count=sum(1 for L in length if L), overflow=len(pieces) > T, max_bytes=max(blen + [0]),
                         longest=shown[blen.index(max(blen))] if blen else "", run=run[:P],
                         contraction=contraction, match=match, start=start, length=length, boff=boff, blen=blen,
                         over=over, text=shown)


# ---- bpe ------------------------------------------------------------------------------------------------------------
@dataclass
class BpeStep:
    """One band of the bpe tab: [T] lengths, [T x W] ids (-1 empty) and ranks (NO_MERGE), and this step's merge."""

    length: list[int]
    ids: list[list[int]]
    ranks: list[list[int]] | None  # None: the last step
    low: list[int] | None = None
    at: list[int] | None = None
    new_id: list[int] | None = None
    left: list[int] | None = None
    right: list[int] | None = None


@dataclass
class BpeSteps:
    steps: list[BpeStep]
    length: list[int]  # [T] final tokens per pre-token
    band: list[int]  # [T] the band each row finished in
    final: list[list[int]]  # [T x N]


def bpe_steps(lay: Layout, tok: Tokenizer, ch: CharSteps, pre: PretokenSteps) -> BpeSteps:
    T, M, N = lay.N, lay.max_word_bytes, lay.N
    n_steps = max(M - 1, 0)
    data = bytes(b for b in ch.byte if b >= 0)
    rows = [[tok.byte_ids[b] for b in data[pre.boff[t]:pre.boff[t] + min(pre.blen[t], M)]] for t in range(T)]
    merging = [True] * T
    lengths0 = [len(r) for r in rows]
    steps = []
    for s in range(n_steps + 1):
        W = width(lay, s)
        last = s == n_steps
        ids = [(r + [-1] * W)[:W] if merging[t] else [-1] * W for t, r in enumerate(rows)]
        step = BpeStep(length=[len(r) for r in rows], ids=ids, ranks=None)
        steps.append(step)
        if last:
            break
        step.ranks = [[tok.ranks.get((r[j], r[j + 1]), NO_MERGE) if merging[t] and j + 1 < len(r) else NO_MERGE
                       for j in range(W)] for t, r in enumerate(rows)]
        step.low, step.at, step.new_id, step.left, step.right = ([] for _ in range(5))
        for t, r in enumerate(rows):
            low = min(step.ranks[t])
            at = step.ranks[t].index(low) if low < NO_MERGE else NO_MERGE
            new = tok.merge_ids[low] if low < NO_MERGE else -1
            step.low.append(low)
            step.at.append(at)
            step.new_id.append(new)
            step.left.append(tok.ranks.get((r[at - 1], new), NO_MERGE) if 1 <= at < NO_MERGE else NO_MERGE)
            step.right.append(tok.ranks.get((new, r[at + 2]), NO_MERGE) if at + 2 < len(r) else NO_MERGE)
            if low < NO_MERGE:
                r[at:at + 2] = [new]
            else:
                merging[t] = False
    length = [len(r) for r in rows]
    return BpeSteps(steps=steps, length=length, band=[lengths0[t] - length[t] for t in range(T)],
                    final=[[r[j] if j < len(r) else -1 for j in range(N)] for r in rows])


# ---- tokens -------------------------------------------------------------------------------------------------------
@dataclass
class TokenSteps:
    bos_n: int
    n_tokens: int
    first: list[int]  # [T] first position of each pre-token's tokens
    pretoken: list[int]  # [N] -1: BOS or padding
    slot: list[int]  # [N]
    ids: list[int]  # [N]


def token_steps(lay: Layout, tok: Tokenizer, bpe: BpeSteps, bos: bool) -> TokenSteps:
    N, T = lay.N, lay.N
    eot = tok.eot_id if tok.eot_id is not None else 0
    b = 1 if bos and tok.eot_id is not None else 0
    first = [b + x for x in accumulate(bpe.length, initial=0)][:T]
    n_tokens = b + sum(bpe.length)
    pretoken, slot, ids = [], [], []
    for i in range(N):
        t = -1 if i < b or i >= n_tokens else bisect_right(first, i) - 1
        pretoken.append(t)
        slot.append(-1 if t < 0 else i - first[t])
        ids.append(eot if t < 0 else bpe.final[t][i - first[t]])
    return TokenSteps(bos_n=b, n_tokens=n_tokens, first=first, pretoken=pretoken, slot=slot, ids=ids)


# ---- decoding ids back to text -------------------------------------------------------------------------------------
@dataclass
class DecodeSteps:
    """One row per id: the stored token, its bytes [D] (-1 past the end), and per byte: the continuation bytes it
    announces, the length of the piece that would start there, the code point shown (-1 inside a piece, U+FFFD for
    an invalid or incomplete one), the piece's text; then the token's text."""

    ids: list[int]
    stored: list[str]
    n: list[int]
    bytes: list[list[int]]
    need: list[list[int]]
    plen: list[list[int]]
    shown: list[list[int]]
    piece: list[list[str]]
    text: list[str]


def announced(b: int) -> int:
    """Continuation bytes a UTF-8 lead byte announces (0 for ASCII, continuation and invalid bytes)."""
    return 1 if 0xC2 <= b <= 0xDF else 2 if 0xE0 <= b <= 0xEF else 3 if 0xF0 <= b <= 0xF4 else 0


def piece_at(data: bytes, j: int) -> tuple[int, int]:
    """(length, code point) of the piece Python's decode(errors="replace") reads from byte j: a whole character,
    or the maximal subpart it turns into one U+FFFD."""
    chunk = data[j:j + 4]
    for k in range(1, len(chunk) + 1):
        try:
            return k, ord(chunk[:k].decode("utf-8"))
        except UnicodeDecodeError as e:
            if e.reason != "unexpected end of data":
                break
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as e:
        assert e.start == 0
        return e.end, REPLACEMENT
    raise AssertionError(f"no piece at byte {j} of {data!r}")  # pragma: no cover


def decode_steps(tok: Tokenizer, ids: list[int], D: int) -> DecodeSteps:
    out = DecodeSteps(ids=list(ids), stored=[], n=[], bytes=[], need=[], plen=[], shown=[], piece=[], text=[])
    for i in ids:
        stored = tok.decoder[i]
        data = bytes(CHAR_BYTE[c] for c in stored[:D])  # <|endoftext|>'s characters are their own bytes
        nd = [announced(data[j]) if j < len(data) else 0 for j in range(D)]
        plen = [piece_at(data, j)[0] if j < len(data) else 1 for j in range(D)]
        shown = [-1] * D
        j = 0
        while j < len(data):
            k, cp = piece_at(data, j)
            shown[j] = visible(cp) if cp < 128 else cp
            j += k
        out.stored.append(stored)
        out.n.append(len(stored))
        out.bytes.append([data[j] if j < len(data) else -1 for j in range(D)])
        out.need.append(nd)
        out.plen.append(plen)
        out.shown.append(shown)
        out.piece.append([chr(c) if c >= 0 else "" for c in shown])
        out.text.append(EOT if i == tok.eot_id else "".join(out.piece[-1]))
    return out


# ---- everything -----------------------------------------------------------------------------------------------------
@dataclass
class TokenizerSteps:
    chars: CharSteps
    pre: PretokenSteps
    bpe: BpeSteps
    tokens: TokenSteps
    status_kind: str  # "" or a key of STATUS
    status: str


def status_of(lay: Layout, tok: Tokenizer, bos: bool, ch: CharSteps, pre: PretokenSteps,
              toks: TokenSteps) -> tuple[str, str]:
    """(kind, message) of the first limit the prompt breaks, ("", "") when all is well."""
    P, M, N = lay.max_chars, lay.max_word_bytes, lay.N
    broken = {"chars": ch.prompt_units > P, "bos": bos and tok.eot_id is None, "empty": toks.n_tokens == 0,
              "pretokens": pre.overflow, "word": pre.max_bytes > M, "tokens": toks.n_tokens > N}
    for kind, msg in STATUS:
        if broken[kind]:
            return kind, msg.format(units=ch.prompt_units, P=P, M=M, N=N, longest=pre.longest, bytes=pre.max_bytes,
                                    n_tokens=toks.n_tokens)
    return "", ""


def tokenizer_steps(prompt: str, bos: bool, lay: Layout, tok: Tokenizer) -> TokenizerSteps:
    ch = chars_steps(prompt, lay)
    pre = pretoken_steps(prompt, lay, ch)
    bpe = bpe_steps(lay, tok, ch, pre)
    toks = token_steps(lay, tok, bpe, bos)
    kind, msg = status_of(lay, tok, bos, ch, pre, toks)
    return TokenizerSteps(ch, pre, bpe, toks, kind, msg)
