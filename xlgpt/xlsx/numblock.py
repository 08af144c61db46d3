"""Weight blocks as deflate: float32 -> `<c r="AB12"><v>+1.23456789e-02</v></c>` cells, compressed directly.

A number is written like `'%+.8e' % x` (`sci9`, exact integer arithmetic): sign, 9 significant digits,
two-digit exponent, always 15 characters (float32 exponents lie within +-45), so the cells of a block
column have a fixed width and the XML around the numbers is known. 9 digits round-trip exactly to
float32; an engine parses the decimal as float64 (`written_values` gives that float64).

How a row is coded: let Z_k be the text from just after the decimal point of cell k to just after
the decimal point of cell k+1,

    Z_k = 8 digits | e-02 | </v></c><c r=" | AC | 123" s="4"><v> | + | 1 | .

Z_k has the length of Z_{k-1} (except where the column letters grow) and the same text except the
digits, the exponent, the last column letter, the sign and the first digit. So Z_k is: 8 literal digits
(Huffman codes looked up four digits at a time); one back-reference for "e-02</v></c><c r="A" to the
nearest of the last three cells with the same exponent (else a shorter one and the exponent's last
digit or all of it as literals); the new letter(s); a back-reference to Z_{k-1} for `123" s="4"><v>`,
longer when sign and first digit repeat. A row's first cell and the text between rows (row tags, the
labels in columns A:B) are literals. Per chunk of rows: one dynamic Huffman block, its code taken from
the first slice of rows (plus one count for every case that could still occur).

The zip needs the CRC-32 of the text, but the text is never laid out: CRC-32 is linear, so a row's is
the template's plus, per number, a few table lookups (`row_crcs`).
"""
from __future__ import annotations

import math
import threading
import zlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .deflate import EOB, U64, BitStream, Code, crc32_combine, lits, match, zlib_segment

SLICE = 1 << 15  # cells per vector step: temporaries of ~256 KB, reused on the heap (see heap.py)
EXP_MIN, EXP_MAX = -45, 38  # decimal exponents of float32 (denormals down to 1.4e-45)
N_EXP = EXP_MAX - EXP_MIN + 1


def _exp_text(i: int) -> bytes:
    x = i + EXP_MIN
    return b"e%+03d" % x


EXP_TEXT = [_exp_text(i) for i in range(N_EXP)]
EXP_KEY3 = np.array([hash(t[:3]) % 1000003 for t in EXP_TEXT], np.int64)  # "e-0": case C when equal
EXP_LAST = np.array([t[3] - 48 for t in EXP_TEXT], np.int64)
DIG4_CHARS = np.frombuffer("".join(f"{i:04d}" for i in range(10000)).encode(), np.uint8).reshape(10000, 4)
DIG4_DIGITS = DIG4_CHARS.astype(np.int64) - 48
DIG4_COUNT = np.zeros((10000, 10), np.int64)
for _j in range(4):
    DIG4_COUNT[np.arange(10000), DIG4_DIGITS[:, _j]] += 1


# ---- exact '%+.8e' for float32 --------------------------------------------------------------------------
def _exponent_tables():
    """Per binary exponent E (and bump = value >= the next power of ten): x = m * 2**(E-150) with
    m in [2**23, 2**24) -> 9-digit q = round(m * MUL >> SH) exactly, decimal exponent X."""
    x0 = np.zeros(256, np.int64)
    thr = np.full(256, 1 << 24, np.int64)
    mul = np.zeros(512, U64)
    sh = np.zeros(512, U64)
    ok = np.zeros(512, bool)
    for E in range(1, 255):
        e2 = E - 150
        low = Fraction(2) ** (E - 127)  # the binade starts here
        X = 0
        while Fraction(10) ** (X + 1) <= low:
            X += 1
        while Fraction(10) ** X > low:
            X -= 1
        x0[E] = X
        thr[E] = min(max(math.ceil(Fraction(10) ** (X + 1) / Fraction(2) ** e2), 1 << 23), 1 << 24)
        for bump in (0, 1):
            k = 8 - (X + bump)
            s = k + e2
            if not 0 <= k <= 17 or s < -62:
                continue
            i = 2 * E + bump
            mul[i], sh[i] = (5 ** k << s, 0) if s >= 0 else (5 ** k, -s)
            ok[i] = True
    return x0, thr, mul, sh, ok


X0, THR, MUL, SH, FAST = _exponent_tables()
HALF = np.where(SH > 0, U64(1) << (SH - U64(1)), U64(1)).astype(U64)  # SH == 0: remainder 0, never rounds
MASK = (U64(1) << SH) - U64(1)


@dataclass
class Sci:
    """Numbers as '%+.8e' pieces: sign (0 '+', 1 '-'), first digit, 8 more digits as two 4-digit
    groups, exponent index into EXP_TEXT."""

    neg: np.ndarray
    d1: np.ndarray
    hi4: np.ndarray
    lo4: np.ndarray
    ex: np.ndarray

    def text(self, i: int) -> str:
        return "%s%d.%04d%04de%+03d" % ("-+"[1 - int(self.neg[i])], self.d1[i], self.hi4[i], self.lo4[i], int(self.ex[i]) + EXP_MIN)


def sci9(a: np.ndarray) -> Sci:
    """Exactly the digits of '%+.8e' % x for float32 x (correctly rounded, ties to even)."""
    a = np.ascontiguousarray(a, np.float32).ravel()
    n = a.size
    out = Sci(np.empty(n, np.uint8), np.empty(n, np.intp), np.empty(n, np.intp), np.empty(n, np.intp),
              np.empty(n, np.intp))  # intp: they index lookup tables
    slow: list[np.ndarray] = []
    for i in range(0, n, SLICE):
        bits = a[i:i + SLICE].view(np.uint32)
        E = ((bits >> 23) & 0xFF).astype(np.intp)
        m = (bits & 0x7FFFFF) | 0x800000
        bump = m >= THR[E]
        idx = 2 * E + bump
        P = m.astype(U64) * MUL[idx]
        t = SH[idx]
        q = P >> t
        rem = P & MASK[idx]
        half = HALF[idx]
        q += (rem > half) | ((rem == half) & ((q & U64(1)) == U64(1)))
        X = X0[E] + bump
        over = q >= U64(1_000_000_000)  # rounded up to the next power of ten
        if over.any():
            q = np.where(over, U64(100_000_000), q)
            X = X + over
        d1 = q // U64(100_000_000)
        m8 = q - d1 * U64(100_000_000)
        hi = m8 // U64(10_000)
        sl = slice(i, i + bits.size)
        out.neg[sl] = bits >> 31
        out.d1[sl] = d1
        out.hi4[sl] = hi
        out.lo4[sl] = m8 - hi * U64(10_000)
        out.ex[sl] = X - EXP_MIN
        bad = ~FAST[idx]
        if bad.any():
            slow.append(np.flatnonzero(bad) + i)
    for j in (np.concatenate(slow) if slow else ()):  # zero, denormals, |x| < 1e-9 or >= 1e9: rare
        s = "%+.8e" % float(a[j])
        out.neg[j] = s[0] == "-"
        out.d1[j] = int(s[1])
        out.hi4[j] = int(s[3:7])
        out.lo4[j] = int(s[7:11])
        out.ex[j] = int(s[12:]) - EXP_MIN
    return out


_POW10 = 10.0 ** np.arange(23)


def written_values(a: np.ndarray) -> np.ndarray:
    """The float64 an engine reads back from the decimals written for float32 `a` (same shape): the
    9-digit decimal, correctly rounded to float64 (q / 10**k of two exact doubles when k <= 22)."""
    a = np.asarray(a, np.float32)
    s = sci9(a)
    q = (s.d1 * 100_000_000 + s.hi4 * 10_000 + s.lo4).astype(np.float64)
    k = 8 - (s.ex + EXP_MIN)
    ok = np.abs(k) <= 22
    kk = np.clip(k, -22, 22)
    v = np.where(kk >= 0, q / _POW10[np.abs(kk)], q * _POW10[np.abs(kk)])
    v[s.neg.astype(bool)] *= -1
    for i in np.flatnonzero(~ok):  # below 1e-14 or above 1e30: rare
        v[i] = float(s.text(i))
    return v.reshape(a.shape)


def sci_texts(a: np.ndarray) -> list[str]:
    s = sci9(a)
    return [s.text(i) for i in range(s.neg.size)]


# ---- CRC-32 by linearity ------------------------------------------------------------------------------
# crc32(M) = L(M) ^ crc32(zeros(len M)) with L linear; L(A + B) = shift_{len B}(L(A)) ^ L(B), where
# shift_n ("append n zero bytes") is a linear map of the 32-bit state, applied with four byte tables.
# So a row's CRC is the template's, plus each number's contribution (four lookups for the number,
# four for its shift to the row's end): no need to lay out the 40 bytes of each cell as text.
def _zeros_crc(n: int) -> int:
    return zlib.crc32(bytes(n))


def _lin(data: bytes) -> int:
    return zlib.crc32(data) ^ _zeros_crc(len(data))


def _shift_images(nbytes: int) -> np.ndarray:
    return np.array([crc32_combine(1 << i, 0, nbytes) for i in range(32)], np.uint32)


_POW2: list[np.ndarray] = []  # tables of "append 2**b zero bytes"
_CODERS_LOCK = threading.Lock()


def _shift_images_many(nbytes: np.ndarray) -> np.ndarray:
    """[n, 32] images of the unit vectors under "append nbytes[i] zero bytes", by binary powers."""
    if len(_POW2) < 40:  # built whole, then published: encoder threads share the tables
        tables, t = [], _tables(_shift_images(1))
        for _ in range(40):
            tables.append(t)
            t = _tables(_apply(t, _apply(t, (U64(1) << np.arange(32, dtype=U64)).astype(np.uint32))))
        _POW2[:] = tables
    imgs = np.broadcast_to((U64(1) << np.arange(32, dtype=U64)).astype(np.uint32), (len(nbytes), 32)).copy()
    for b in range(int(nbytes.max()).bit_length()):
        sel = ((nbytes >> b) & 1).astype(bool)
        if sel.any():
            imgs[sel] = _apply(_POW2[b], imgs[sel])
    return imgs


def _tables(images: np.ndarray) -> np.ndarray:
    """[..., 32] images of the unit vectors -> [..., 4, 256] byte tables of the linear map."""
    t = np.zeros(images.shape[:-1] + (4, 256), np.uint32)
    for j in range(4):
        for i in range(8):
            t[..., j, 1 << i:2 << i] = t[..., j, :1 << i] ^ images[..., 8 * j + i, None]
    return t


def _apply_at(flat: np.ndarray, off: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per element its own map: byte tables at flat[off : off + 1024]."""
    return (flat[off + (v & 0xFF)] ^ flat[off + (256 + ((v >> 8) & 0xFF))] ^ flat[off + (512 + ((v >> 16) & 0xFF))]
            ^ flat[off + (768 + (v >> 24))])


def _apply(table: np.ndarray, v: np.ndarray) -> np.ndarray:
    return table[0][v & 0xFF] ^ table[1][(v >> 8) & 0xFF] ^ table[2][(v >> 16) & 0xFF] ^ table[3][v >> 24]


def _number_crc_tables():
    """L of the 15 characters of a number, as the XOR of four lookups: (sign, first digit, '.'), the next
    four digits, four more, the exponent."""
    z = bytes(12)
    lp = np.array([_lin(b"%s%d." % (b"+-"[i // 10:i // 10 + 1], i % 10) + z) for i in range(20)], np.uint32)
    lh = np.array([_lin(DIG4_CHARS[i].tobytes() + bytes(8)) for i in range(10000)], np.uint32)
    ll = np.array([_lin(DIG4_CHARS[i].tobytes() + bytes(4)) for i in range(10000)], np.uint32)
    le = np.array([_lin(t) for t in EXP_TEXT], np.uint32)
    return lp, lh, ll, le


_NUM_CRC: tuple | None = None
GROUP = 8
BACK = 3  # how far back a cell with the same exponent is looked for
_SHIFTED: dict = {}


def _shifted_number_tables(w: int):
    """For cells of width w: the number tables (sign+digit, 4 digits, 4 digits, exponent), each shifted
    to the end of its cell (8 bytes of "</v></c>") and on by p*w bytes for p = 0..GROUP-1, concatenated.
    Returns (table, offsets of the four parts)."""
    global _NUM_CRC
    if w not in _SHIFTED:
        if _NUM_CRC is None:
            _NUM_CRC = _number_crc_tables()
        parts = []
        ts = _tables(_shift_images_many(8 + w * np.arange(GROUP)))  # [GROUP, 4, 256]
        for base in _NUM_CRC:
            parts.append(np.concatenate([_apply(ts[p], base) for p in range(GROUP)]))
        sizes = np.cumsum([0] + [x.size for x in parts])
        _SHIFTED[w] = (np.concatenate(parts), sizes[:4])
    return _SHIFTED[w]


# ---- the coder -----------------------------------------------------------------------------------------------
def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


PAD = 316  # combined alphabet: 0..285 literal/length, 286..315 distance, 316 nothing


class _Entries:
    """Symbol lists (one per case) as padded arrays: counted and encoded with any code, vectorized."""

    def __init__(self, lists: list[list]) -> None:
        n, m = len(lists), max(1, max((len(x) for x in lists), default=1))
        self.n = n
        self.sym = np.full((n, m), PAD, np.intp)
        self.eb = np.zeros((n, m), np.int64)
        self.ev = np.zeros((n, m), U64)
        for i, syms in enumerate(lists):
            for j, (alpha, sym, eb, ev) in enumerate(syms):
                self.sym[i, j] = sym + 286 * alpha
                self.eb[i, j] = eb
                self.ev[i, j] = ev

    def count(self, weights: np.ndarray) -> np.ndarray:
        return np.bincount(self.sym.ravel(), weights=np.repeat(weights, self.sym.shape[1]), minlength=PAD + 1)

    def encode(self, cl: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bits, length) per entry; a length over 64 marks an entry too long for one unit."""
        val = np.zeros(self.n, U64)
        tot = np.zeros(self.n, np.int64)
        ln, cd = cl[self.sym], cc[self.sym]
        for j in range(self.sym.shape[1]):
            val |= cd[:, j] << tot.astype(U64)
            tot += ln[:, j]
            val |= self.ev[:, j] << tot.astype(U64)
            tot += self.eb[:, j]
        return val, tot


def _ecase_table() -> np.ndarray:
    """Exponent of a cell vs the one before: 0 same; 1+d "e-0" same, last digit d; 11+e otherwise."""
    prev = np.arange(N_EXP)[:, None]
    cur = np.arange(N_EXP)[None, :]
    return np.where(prev == cur, 0, np.where(EXP_KEY3[prev] == EXP_KEY3[cur], 1 + EXP_LAST[cur], 11 + cur)).ravel()


def _beta_table() -> np.ndarray:
    """(sign, first digit) of cell k and of k+1 -> sd*20 + sign*10 + digit of k+1; sd: 0 both repeat,
    1 only the sign repeats, 2 the sign changes."""
    cur = np.arange(20)[:, None]
    nxt = np.arange(20)[None, :]
    sd = np.where(cur // 10 != nxt // 10, 2, np.where(cur != nxt, 1, 0))
    return (sd * 20 + nxt).ravel()


ECASE2 = _ecase_table()
BETA2 = _beta_table()


_CODERS: dict = {}
STATS = {"zlib_slices": 0}  # slices that fell back to zlib (a regression if it grows for real data)


def coder(letters: list[bytes], sattr: bytes, lr: int) -> "BlockCoder":
    """A shared coder per layout: the 12 blocks of a GPT-2 share theirs (tables take ~0.1 s to build)."""
    key = (letters[0], len(letters), sattr, lr)
    with _CODERS_LOCK:  # encoder threads must never see a coder whose tables are half built
        c = _CODERS.get(key)
        if c is None:
            if len(_CODERS) > 64:
                _CODERS.clear()
            c = BlockCoder(letters, sattr, lr)
            c._crc_tables()
            _CODERS[key] = c
    return c


class BlockCoder:
    """Codes rows of one block layout (column letters, style attribute, row numbers of `lr` digits)."""

    def __init__(self, letters: list[bytes], sattr: bytes, lr: int) -> None:
        self.letters, self.sattr, self.lr = letters, sattr, lr
        C = self.C = len(letters)
        lc = [len(x) for x in letters]
        ls = len(sattr)
        self.mid_len = lr + 1 + ls + 4  # 123" s="4"><v>
        self.width = [34 + n + lr + ls for n in lc]  # <c r="AC123" s="4"><v>+1.23456789e-02</v></c>
        self.row_len = sum(self.width)
        self._crc = None
        if C < 2:
            return
        # alpha_k, k = 1..C-1: the exponent of cell k and "</v></c><c r=" with the letters of k+1 in common
        # with k (none after the last cell). One back-reference covers it all when an earlier cell of the
        # same layout, 1..BACK cells back, has the same exponent (AL case m-1); otherwise (AL case BACK)
        # the exponent is coded against cell k-1 by A1: a 3-byte reference and its last digit, or literals.
        a_keys: dict[tuple, int] = {}
        a_cls, al_lists = [], []
        flen, news = [], []
        for k in range(1, C):
            if k < C - 1:
                cp = _common_prefix(letters[k + 1], letters[k])
                flen.append(14 + cp)
                news.append(letters[k + 1][cp:])
            else:
                cp = 0
                flen.append(8)
                news.append(b"")
            a_cls.append(a_keys.setdefault((flen[-1], self.width[k]), len(a_keys)))
        self.a_keys = list(a_keys)
        self.na = len(self.a_keys)
        self.a_cls = np.array(a_cls, np.intp)
        a1 = []
        for ecase in range(95):
            for fl, dist in self.a_keys:
                if ecase == 0:
                    a1.append([])
                elif ecase <= 10:
                    a1.append(match(3, dist) + lits(bytes([48 + ecase - 1])))
                else:
                    a1.append(lits(EXP_TEXT[ecase - 11]))
        self.A1 = _Entries(a1)
        self.back_ok = np.zeros((BACK, C - 1), bool)
        for m in range(1, BACK + 1):
            for k in range(1, C):
                fl = flen[k - 1]
                dist = sum(self.width[k - m + 1:k + 1])
                ok = k - m >= 0 and (fl == 8 or letters[k + 1 - m][:fl - 14] == letters[k + 1][:fl - 14])
                self.back_ok[m - 1, k - 1] = ok
                al_lists.append(match(fl + 4, dist) + lits(news[k - 1]) if ok else [])
        for k in range(1, C):
            al_lists.append(match(flen[k - 1], self.width[k]) + lits(news[k - 1]))
        self.AL = _Entries(al_lists)
        # beta_k, k = 1..C-2: row number etc. of cell k+1, then its sign, first digit and "."
        b_keys: dict[int, int] = {}
        b_cls = [b_keys.setdefault(self.width[k + 1], len(b_keys)) for k in range(1, C - 1)]
        self.b_keys = list(b_keys)
        self.n_b = len(self.b_keys) * 60
        self.b_cls = np.array(b_cls, np.intp) * 60
        b_lists = []
        for dist in self.b_keys:
            for sd in range(3):
                for neg in (0, 1):
                    for d1 in range(10):
                        if sd == 0:
                            b_lists.append(match(self.mid_len + 3, dist))
                        elif sd == 1:
                            b_lists.append(match(self.mid_len + 1, dist) + lits(bytes([48 + d1, 46])))
                        else:
                            b_lists.append(match(self.mid_len, dist) + lits(bytes([45 if neg else 43, 48 + d1, 46])))
        self.B = _Entries(b_lists or [[]])

    # ---- CRC tables -----------------------------------------------------------------------------------
    def _crc_tables(self):
        """Three levels, all tables small enough for the cache. Cells of equal width (a segment) form
        groups of 8 counted from the segment's end, groups form supergroups of 8. A number's contribution
        comes from lookup tables already shifted by its place in its group; a group's XOR is shifted by
        its place in the supergroup (tables per width and place); a supergroup's to the row's end."""
        if self._crc is None:
            C, lr, ls = self.C, self.lr, len(self.sattr)
            offs1 = np.zeros((4, C), np.intp)  # per column: offsets into the number tables
            g_start, g_off, s_start, s_after = [], [], [], []
            widths, t1, t2 = {}, [], []
            pos, after = C, 0  # walk the row backwards, segment by segment
            while pos > 0:
                w = self.width[pos - 1]
                k0 = pos
                while k0 > 0 and self.width[k0 - 1] == w:
                    k0 -= 1
                if w not in widths:
                    tab, parts = _shifted_number_tables(w)
                    widths[w] = (sum(x.size for x in t1), len(t2))
                    t1.append(tab + 0 * parts[0])
                    t2.append(_tables(_shift_images_many(w * GROUP * np.arange(GROUP))))  # [GROUP, 4, 256]
                    widths[w] = widths[w] + (parts,)
                o1, o2, parts = widths[w]
                m = pos - k0
                p = (m - 1 - np.arange(m)) % GROUP  # place in the group, from its end
                offs1[0, k0:pos] = o1 + parts[0] + p * 20
                offs1[1, k0:pos] = o1 + parts[1] + p * 10000
                offs1[2, k0:pos] = o1 + parts[2] + p * 10000
                offs1[3, k0:pos] = o1 + parts[3] + p * N_EXP
                for j, e in enumerate(range(pos, k0, -GROUP)):  # groups right to left
                    g_start.append(max(k0, e - GROUP))
                    g_off.append(((o2 * GROUP) + j % GROUP) * 1024)
                    if j % GROUP == 0:
                        s_start.append(len(g_start) - 1)  # fixed below: index of its first group
                        s_after.append(after + (pos - e) * w)
                    else:
                        s_start[-1] = len(g_start) - 1
                after += m * w
                pos = k0
            G = len(g_start)
            order = np.argsort(g_start)  # groups left to right
            rank = np.empty(G, np.intp)
            rank[order] = np.arange(G)
            self._groups = np.array(g_start, np.intp)[order]
            g_off = np.array(g_off, np.intp)[order]
            s_first = np.array([rank[i] for i in s_start], np.intp)
            s_order = np.argsort(s_first)
            self._super = s_first[s_order]
            s_after = np.array(s_after, np.int64)[s_order]
            flat1 = np.concatenate(t1)
            flat2 = np.concatenate(t2).reshape(-1)
            flat3 = _tables(_shift_images_many(s_after)).reshape(-1)  # [S, 4, 256]
            # row digits: the same text in every cell, (1 + ls + 4 + 15 + 8) bytes before each cell's end
            cell_after = np.concatenate([np.cumsum(np.array(self.width[:0:-1], np.int64))[::-1], [0]]).astype(np.int64)
            q = np.bitwise_xor.reduce(_shift_images_many(cell_after + 1 + ls + 4 + 15 + 8), axis=0)
            template = b"".join(b'<c r="' + L + bytes(lr) + b'"' + self.sattr + b"><v>" + bytes(15) + b"</v></c>"
                                for L in self.letters)
            base = _lin(template) ^ _zeros_crc(self.row_len)  # crc32 = L ^ zeros-crc: folded in here
            self._crc = (flat1, offs1, flat2, g_off, flat3, _tables(q), base,
                         _tables(_shift_images(self.row_len)).tolist())
        return self._crc

    def row_crcs(self, rows: list[int], s: "Sci") -> np.ndarray:
        """crc32 of each row's cells (uint32), without writing them out."""
        flat1, offs1, flat2, g_off, flat3, q, base, _ = self._crc_tables()
        n, C = len(rows), self.C
        key = (s.neg.astype(np.intp) * 10 + s.d1).reshape(n, C)
        v = flat1[key + offs1[0]] ^ flat1[s.hi4.reshape(n, C) + offs1[1]] ^ flat1[s.lo4.reshape(n, C) + offs1[2]] \
            ^ flat1[s.ex.reshape(n, C) + offs1[3]]
        g = np.bitwise_xor.reduceat(v, self._groups, axis=1)
        g = _apply_at(flat2, g_off, g)
        g = np.bitwise_xor.reduceat(g, self._super, axis=1)
        g = _apply_at(flat3, np.arange(g.shape[1], dtype=np.intp) * 1024, g)
        rd = np.array([_lin(b"%d" % r) for r in rows], np.uint32)
        return np.bitwise_xor.reduce(g, axis=1) ^ _apply(q, rd) ^ np.uint32(base)

    # ---- coding ---------------------------------------------------------------------------------------
    def _code(self, s: "Sci", texts: list[bytes], tail: bytes, idx: tuple, seen_all: bool = False):
        """The block's code: symbol counts of the first slice, plus one of every case that could occur in
        the later ones (none when the first slice is all there is)."""
        extra = 0 if seen_all else 1
        f = np.zeros(PAD + 1, np.float64)
        f[:256] += np.bincount(np.frombuffer(b"".join(texts) + tail, np.uint8), minlength=256) + extra
        f[48:58] += (np.bincount(s.hi4, minlength=10000) + np.bincount(s.lo4, minlength=10000)) @ DIG4_COUNT
        f[EOB] += 1
        if self.C > 1:
            a1, al, b = idx
            f += self.A1.count(np.bincount(a1.ravel(), minlength=self.A1.n) + extra)
            f += self.AL.count(np.bincount(al.ravel(), minlength=self.AL.n) + extra)
            f += self.B.count(np.bincount(b.ravel(), minlength=self.B.n + 1)[:self.B.n] + extra)
        code = Code(f[:286].astype(np.int64), f[286:316].astype(np.int64))
        cl = np.array(code.lit_len + code.dist_len + [0], np.int64)
        cc = np.array(code.lit_code + code.dist_code + [0], U64)
        dl, dc = cl[48:58][DIG4_DIGITS], cc[48:58][DIG4_DIGITS]
        s1, s2, s3 = dl[:, 0], dl[:, 0] + dl[:, 1], dl[:, 0] + dl[:, 1] + dl[:, 2]
        d4v = dc[:, 0] | (dc[:, 1] << s1.astype(U64)) | (dc[:, 2] << s2.astype(U64)) | (dc[:, 3] << s3.astype(U64))
        luts = {"d4v": d4v, "d4l": (s3 + dl[:, 3]).astype(U64), "tl": np.append(cl[:256], 0).astype(U64),
                "tc": np.append(cc[:256], U64(0))}
        if self.C > 1:
            u = lambda vl: (vl[0], np.minimum(vl[1], 65).astype(U64))  # noqa: E731 - 65: "too long"
            luts["a1"] = u(self.A1.encode(cl, cc))
            luts["al"] = u(self.AL.encode(cl, cc))
            bv, bl = self.B.encode(cl, cc)
            luts["b"] = u((np.append(bv, U64(0)), np.append(bl, 0)))  # the last cell: nothing
        return code, luts

    def _cases(self, s: "Sci", n: int):
        C, M = self.C, BACK
        ex = s.ex.reshape(n, C)
        cur = ex[:, 1:]
        back = np.full((n, C - 1), M, np.int8)  # AL case: the nearest earlier cell with the same exponent
        for m in range(M, 0, -1):
            eq = ex[:, :C - m] == ex[:, m:]  # cells k = m..C-1 against k-m
            eq &= self.back_ok[m - 1, m - 1:]
            back[:, m - 1:][eq] = m - 1
        ec = np.where(back < M, 0, ECASE2[ex[:, :-1] * N_EXP + cur])
        a1 = ec * self.na + self.a_cls
        al = back.astype(np.intp) * (C - 1) + np.arange(C - 1)
        key = (s.neg.astype(np.intp) * 10 + s.d1).reshape(n, C)
        b = np.empty((n, C - 1), np.intp)
        b[:, :-1] = self.b_cls + BETA2[key[:, 1:-1] * 20 + key[:, 2:]]
        b[:, -1] = self.B.n
        return a1, al, b

    def _texts(self, rows: list[int], gaps: list[bytes], s: "Sci") -> list[bytes]:
        """Per row, as literals: the text before it, its first cell, and cell 1 up to its '.'."""
        C, sattr, L0 = self.C, self.sattr, self.letters[0]
        L1 = self.letters[1] if C > 1 else b""
        neg, d1, hi, lo, ex = s.neg, s.d1, s.hi4, s.lo4, s.ex
        out = []
        for r, row in enumerate(rows):
            i = r * C
            rn = b"%d" % row
            t = (gaps[r] + b'<c r="' + L0 + rn + b'"' + sattr + b"><v>"
                 + b"%s%d.%04d%04d" % (b"-" if neg[i] else b"+", d1[i], hi[i], lo[i]) + EXP_TEXT[ex[i]] + b"</v></c>")
            if C > 1:
                t += b'<c r="' + L1 + rn + b'"' + sattr + b"><v>" + (b"-" if neg[i + 1] else b"+") + b"%d." % d1[i + 1]
            out.append(t)
        return out

    def encode(self, arr: np.ndarray, rows: list[int], gaps: list[bytes]) -> tuple[bytes, int, int]:
        """Deflate of gaps[0] row_0 gaps[1] row_1 ... row_{R-1} gaps[R]: dynamic blocks ending byte-aligned.
        Returns (bytes, crc32, uncompressed length)."""
        R, C = arr.shape
        assert C == self.C and len(rows) == R and len(gaps) == R + 1
        step = max(1, SLICE // C)
        out = BitStream()
        crc = 0
        ulen = sum(len(g) for g in gaps) + R * self.row_len
        code = luts = None
        shift_row = self._crc_tables()[7]
        for r0 in range(0, R, step):
            r1 = min(R, r0 + step)
            n = r1 - r0
            s = sci9(arr[r0:r1])
            texts = self._texts(rows[r0:r1], gaps[r0:r1], s)
            idx = self._cases(s, n) if C > 1 else None
            if code is None:
                code, luts = self._code(s, texts, gaps[R], idx, seen_all=r1 == R)
                out.put_int(*code.header())
            tv, tl, tc = _text_units(texts, luts["tc"], luts["tl"])
            # one matrix of units per slice: each row's literal units (right-aligned after zero-length
            # padding), then for cells k = 1..C-1: mu_1 first, then alpha_k (exponent of k, "</v></c><c r="
            # and letters of k+1) and beta_k + mu_{k+1} (row number ... of k+1, its 8 digits)
            T = int(tc.max())
            width = T + 2 * (C - 1)
            uv = np.zeros((n, width), U64)
            ul = np.zeros((n, width), U64)
            te = np.cumsum(tc)
            flat = np.arange(te[-1]) + np.repeat(np.arange(n) * width + T - te, tc)
            uv.reshape(-1)[flat] = tv
            ul.reshape(-1)[flat] = tl
            if C > 1:
                d4v, d4l = luts["d4v"], luts["d4l"]
                hi = s.hi4.reshape(n, C)[:, 1:]
                lo = s.lo4.reshape(n, C)[:, 1:]
                x = d4l[hi]
                mu_v = d4v[hi] | (d4v[lo] << x)
                mu_l = x + d4l[lo]
                a1, al, b = idx
                (a1v, a1l), (alv, all_), (bv, bl) = luts["a1"], luts["al"], luts["b"]
                uv[:, T] = mu_v[:, 0]
                ul[:, T] = mu_l[:, 0]
                x = a1l[a1]
                uv[:, T + 1::2] = a1v[a1] | (alv[al] << x)
                ul[:, T + 1::2] = x + all_[al]
                bb = b[:, :-1]
                x = bl[bb]
                uv[:, T + 2::2] = bv[bb] | (mu_v[:, 1:] << x)
                ul[:, T + 2::2] = x + mu_l[:, 1:]
            if int(ul.max()) <= 64:
                out.put_units(uv.reshape(-1), ul.reshape(-1))
            else:  # a unit over 64 bits (pathological code lengths): this slice as zlib, between blocks
                STATS["zlib_slices"] += 1
                out.put_int(*code.bits([(0, EOB, 0, 0)]))
                out.sync()
                out.out.append(zlib_segment(self.text(rows[r0:r1], gaps[r0:r1], arr[r0:r1]), 6))
                out.put_int(*code.header())
            row_crc = self.row_crcs(rows[r0:r1], s).tolist()
            for r in range(n):
                crc = zlib.crc32(gaps[r0 + r], crc)
                crc = (shift_row[0][crc & 0xFF] ^ shift_row[1][(crc >> 8) & 0xFF] ^ shift_row[2][(crc >> 16) & 0xFF]
                       ^ shift_row[3][crc >> 24] ^ row_crc[r])
        v, nb = code.bits(lits(gaps[R]) + [(0, EOB, 0, 0)]) if code else (0, 0)
        if code is None:  # no rows
            return zlib_segment(gaps[R], 6), zlib.crc32(gaps[R]), len(gaps[R])
        out.put_int(v, nb)
        out.sync()
        crc = zlib.crc32(gaps[R], crc)
        return out.take(), crc, ulen

    def text(self, rows: list[int], gaps: list[bytes], arr: np.ndarray) -> bytes:
        """The uncompressed XML (slow; for fallbacks and tests): gaps[i] before row i, no final gap."""
        texts = sci_texts(arr)
        C = self.C
        out = []
        for i, r in enumerate(rows):
            out.append(gaps[i])
            out += [b'<c r="%s%d"%s><v>%s</v></c>' % (self.letters[k], r, self.sattr, texts[i * C + k].encode())
                    for k in range(C)]
        return b"".join(out)


def _text_units(texts: list[bytes], ext_code: np.ndarray, ext_len: np.ndarray):
    """Literal texts as units of four codes each (index 256 of the tables: a zero-length pad)."""
    counts = np.array([(len(t) + 3) >> 2 for t in texts], np.int64)
    idx = np.frombuffer(b"".join(t + b"\x00" * (-len(t) & 3) for t in texts), np.uint8).astype(np.intp)
    lens = np.array([len(t) for t in texts], np.int64)
    pad = np.ones(idx.size, bool)
    pad[_ranges(np.concatenate(([0], np.cumsum(counts)[:-1])) * 4, lens)] = False
    idx[pad] = 256
    cl = ext_len[idx].reshape(-1, 4)
    cv = ext_code[idx].reshape(-1, 4)
    c1 = cl[:, 0]
    c2 = c1 + cl[:, 1]
    c3 = c2 + cl[:, 2]
    v = cv[:, 0] | (cv[:, 1] << c1) | (cv[:, 2] << c2) | (cv[:, 3] << c3)
    return v, c3 + cl[:, 3], counts


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges start..start+length."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.intp)
    ends = np.cumsum(lengths)
    return np.arange(total) + np.repeat(starts - (ends - lengths), lengths)
