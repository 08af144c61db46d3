"""Raw deflate (RFC 1951) pieces for numblock.py: Huffman codes, block headers, bit packing, CRC-32 joins.

Why not zlib for the weights: at full size the sheets hold 124M numbers of 9 significant digits, and
zlib's level 1 manages ~30 MB/s on such digit-heavy text here (about one cell per microsecond), after
`%`-formatting that costs as much again. The weight XML is known up to its digits, so numblock.py writes
the deflate symbols itself and this module turns them into bits: `pack_bits` concatenates bit strings of
up to 64 bits with a few vector operations. Each chunk of rows becomes dynamic-Huffman blocks ended by an
empty stored block (what zlib's Z_SYNC_FLUSH writes), so chunks are byte-aligned, can be encoded in
parallel and are simply concatenated; `crc32_combine` joins their CRCs. Deterministic: same input, same
bytes.
"""
from __future__ import annotations

import bisect
import heapq
import zlib

import numpy as np

U64 = np.uint64
SYNC = b"\x00\x00\xff\xff"  # LEN=0, NLEN=~0 of an empty stored block (after its 3 header bits)
FINAL_EMPTY = b"\x03\x00"  # a final, empty fixed-Huffman block: ends a deflate stream

# ---- symbols -----------------------------------------------------------------------------------------
LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
LEN_EXTRA = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
             4097, 6145, 8193, 12289, 16385, 24577]
DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
N_LIT, N_DIST, EOB = 286, 30, 256
CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

# A symbol is (alphabet, symbol, extra_bits, extra_value): alphabet 0 = literal/length, 1 = distance.


def lits(data: bytes) -> list[tuple[int, int, int, int]]:
    return [(0, b, 0, 0) for b in data]


_LEN_SYM = [0] * 259  # length -> index into LEN_BASE
for _i, _b in enumerate(LEN_BASE):
    for _n in range(_b, 259):
        _LEN_SYM[_n] = _i
_LEN_SYM[258] = 28


def match(length: int, dist: int) -> list[tuple[int, int, int, int]]:
    if not (3 <= length <= 258 and 1 <= dist <= 32768):
        raise ValueError(f"bad match length {length} / distance {dist}")
    i = _LEN_SYM[length]
    d = bisect.bisect_right(DIST_BASE, dist) - 1
    return [(0, 257 + i, LEN_EXTRA[i], length - LEN_BASE[i]), (1, d, DIST_EXTRA[d], dist - DIST_BASE[d])]


# ---- Huffman codes -------------------------------------------------------------------------------------
def _huffman_lengths(freqs: list[int]) -> list[int]:
    heap = [(f, i, i) for i, f in enumerate(freqs) if f > 0]  # (weight, tie-break, node): deterministic
    parent: dict[int, int] = {}
    nxt = len(freqs)
    heapq.heapify(heap)
    while len(heap) > 1:
        f1, _, a = heapq.heappop(heap)
        f2, _, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (f1 + f2, nxt, nxt))
        nxt += 1
    out = []
    for i, f in enumerate(freqs):
        n, d = i, 0
        if f > 0:
            while n in parent:
                n = parent[n]
                d += 1
        out.append(d)
    return out


def code_lengths(freqs, limit: int) -> list[int]:
    """Huffman code lengths of at most `limit` bits; at least two symbols get a code, so the code is
    complete (zlib rejects incomplete codes except a lone distance code)."""
    f = [int(x) for x in freqs]
    used = [i for i, x in enumerate(f) if x > 0]
    for i in range(len(f)):
        if len(used) >= 2:
            break
        if f[i] == 0:
            f[i] = 1
            used.append(i)
    while True:
        lengths = _huffman_lengths(f)
        if max(lengths) <= limit:
            return lengths
        f = [(x + 1) // 2 if x > 0 else 0 for x in f]  # flatten the distribution until it fits


def _reverse(code: int, n: int) -> int:
    r = 0
    for _ in range(n):
        r = (r << 1) | (code & 1)
        code >>= 1
    return r


def canonical_codes(lengths: list[int]) -> list[int]:
    """Canonical codes, bit-reversed: deflate packs Huffman codes most significant bit first."""
    max_len = max(lengths)
    bl_count = [0] * (max_len + 1)
    for n in lengths:
        if n:
            bl_count[n] += 1
    next_code, code = [0] * (max_len + 2), 0
    for bits in range(1, max_len + 1):
        code = (code + bl_count[bits - 1]) << 1
        next_code[bits] = code
    out = []
    for n in lengths:
        if n:
            out.append(_reverse(next_code[n], n))
            next_code[n] += 1
        else:
            out.append(0)
    return out


class Code:
    """A dynamic block's two codes, and the encoding of symbol lists with them."""

    def __init__(self, lit_freq: np.ndarray, dist_freq: np.ndarray) -> None:
        self.lit_len = code_lengths(lit_freq, 15)
        self.dist_len = code_lengths(dist_freq, 15)
        self.lit_code = canonical_codes(self.lit_len)
        self.dist_code = canonical_codes(self.dist_len)

    def bits(self, symbols) -> tuple[int, int]:
        """(value, number of bits) of a symbol list, LSB-first as deflate writes it."""
        v = n = 0
        for alpha, sym, eb, ev in symbols:
            ln, cd = (self.lit_len[sym], self.lit_code[sym]) if alpha == 0 else (self.dist_len[sym], self.dist_code[sym])
            if ln == 0:
                raise ValueError(f"symbol {sym} of alphabet {alpha} has no code")
            v |= cd << n
            n += ln
            v |= ev << n
            n += eb
        return v, n

    def header(self, final: bool = False) -> tuple[int, int]:
        """The dynamic block header (BFINAL, BTYPE=2, the code lengths, run-length coded)."""
        hlit = max(257, max(i for i, n in enumerate(self.lit_len) if n) + 1)
        hdist = max(1, max((i for i, n in enumerate(self.dist_len) if n), default=0) + 1)
        seq = self.lit_len[:hlit] + self.dist_len[:hdist]
        rle: list[tuple[int, int, int]] = []  # (code-length symbol, extra bits, extra value)
        i = 0
        while i < len(seq):
            n = seq[i]
            run = 1
            while i + run < len(seq) and seq[i + run] == n:
                run += 1
            if n == 0 and run >= 3:
                take = min(run, 138)
                rle.append((18, 7, take - 11) if take >= 11 else (17, 3, take - 3))
            elif n != 0 and run >= 4:
                rle.append((n, 0, 0))
                take = 1 + min(run - 1, 6)
                rle.append((16, 2, take - 4))
            else:
                take = 1
                rle.append((n, 0, 0))
            i += take
        cl_freq = [0] * 19
        for s, _, _ in rle:
            cl_freq[s] += 1
        cl_len = code_lengths(cl_freq, 7)
        cl_code = canonical_codes(cl_len)
        hclen = max(4, max(j for j, s in enumerate(CL_ORDER) if cl_len[s]) + 1)
        v = n = 0

        def put(value: int, nbits: int) -> None:
            nonlocal v, n
            v |= value << n
            n += nbits

        put(1 if final else 0, 1)
        put(2, 2)
        put(hlit - 257, 5)
        put(hdist - 1, 5)
        put(hclen - 4, 4)
        for s in CL_ORDER[:hclen]:
            put(cl_len[s], 3)
        for s, eb, ev in rle:
            put(cl_code[s], cl_len[s])
            put(ev, eb)
        return v, n


# ---- bit packing -----------------------------------------------------------------------------------------
def pack_bits(vals: np.ndarray, lens: np.ndarray) -> tuple[bytes, int, int]:
    """Concatenate bit strings (each at most 64 bits, LSB-first) -> (whole bytes, tail value, tail bits).

    Each unit lands in the 64-bit word where it starts and spills into the next. Units starting in the
    same word have disjoint bits, so their OR is their sum: a difference of running sums (which may
    wrap around 2**64 without harm). Keep arrays to ~64K units: bigger temporaries make glibc map and
    unmap memory on every operation, which costs more than the arithmetic."""
    if len(vals) == 0:
        return b"", 0, 0
    lens = lens.astype(U64, copy=False)
    ends = np.cumsum(lens, dtype=U64)
    total = int(ends[-1])
    off = ends - lens
    w = off >> U64(6)
    s = off & U64(63)
    last = np.flatnonzero(w[1:] != w[:-1])
    last = np.append(last, w.size - 1)
    lo = np.cumsum(vals << s)[last]
    hi = np.cumsum(vals >> (U64(64) - s))[last]  # a shift by 64 gives 0 in numpy
    lo[1:] -= lo[:-1].copy()
    hi[1:] -= hi[:-1].copy()
    ww = w[last].astype(np.intp)
    words = np.zeros((total >> 6) + 2, U64)
    words[ww] = lo
    words[ww + 1] |= hi
    raw = words.astype("<u8", copy=False).view(np.uint8)
    full = total >> 3
    tail_bits = total & 7
    return raw[:full].tobytes(), int(raw[full]) if tail_bits else 0, tail_bits


class BitStream:
    """Bit strings appended in order (Python ints or numpy unit arrays), emitted as whole bytes."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.tail = 0
        self.tail_bits = 0

    def put_int(self, value: int, nbits: int) -> None:
        value = self.tail | (value << self.tail_bits)
        nbits += self.tail_bits
        nbytes = nbits >> 3
        if nbytes:
            self.out.append((value & ((1 << (nbytes * 8)) - 1)).to_bytes(nbytes, "little"))
        self.tail = value >> (nbytes * 8)
        self.tail_bits = nbits & 7

    def put_units(self, vals: np.ndarray, lens: np.ndarray) -> None:
        if self.tail_bits:
            vals = np.concatenate((np.array([self.tail], U64), vals))
            lens = np.concatenate((np.array([self.tail_bits], lens.dtype), lens))
        data, self.tail, self.tail_bits = pack_bits(vals, lens)
        if data:
            self.out.append(data)

    def sync(self) -> None:
        """End at a byte boundary with an empty stored block (what zlib's Z_SYNC_FLUSH does)."""
        self.put_int(0, 3)
        if self.tail_bits:
            self.put_int(0, 8 - self.tail_bits)
        self.out.append(SYNC)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out = []
        return data


# ---- CRC-32 of concatenations ------------------------------------------------------------------------------
def _gf2_times(mat: list[int], vec: int) -> int:
    s, i = 0, 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, m) for m in mat]


_ZERO_BYTES_OPS: list[list[int]] = []  # [i]: the operator appending 2**i zero bytes to a CRC


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc(A), crc(B) and len(B) (zlib's crc32_combine, absent from Python's zlib)."""
    if len(_ZERO_BYTES_OPS) < 64:  # built whole, then published: encoder threads share it
        ops, op = [], [0xEDB88320] + [1 << i for i in range(31)]  # one zero bit
        for _ in range(3):
            op = _gf2_square(op)  # 2, 4, 8 zero bits: one zero byte
        for _ in range(64):
            ops.append(op)
            op = _gf2_square(op)
        _ZERO_BYTES_OPS[:] = ops
    i = 0
    while len2:
        if len2 & 1:
            crc1 = _gf2_times(_ZERO_BYTES_OPS[i], crc1)
        len2 >>= 1
        i += 1
    return crc1 ^ crc2


def zlib_segment(data: bytes, level: int) -> bytes:
    """Raw deflate of `data` on its own (no back-references outside it), ending byte-aligned, not final."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
