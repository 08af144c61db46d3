"""`xlgpt recalc`: recalculate a workbook with a spreadsheet engine and read what it predicts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engines import defined_names, open_workbook
from .engines.base import Session
from .engines.refs import cell_name, parse_range
from .errors import XlgptError
from .tokenizer import EOT, Tokenizer


def nth_cell(ref: str, i: int) -> str:
    """The i-th cell of an A1 range: down a column, or along a row if the range is one row."""
    r1, c1, r2, c2 = parse_range(ref)
    return cell_name(r1, c1 + i) if r1 == r2 and c1 != c2 else cell_name(r1 + i, c1)


@dataclass
class Workbook:
    """A workbook opened in an engine, read through its defined names."""

    path: Path
    session: Session
    names: dict[str, tuple[str, str]] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise XlgptError(f"{self.path} has no defined name {name!r}: not a workbook written by xlgpt")
        sheet, ref = self.names[name]
        return self.session.read(sheet, ref)

    def value(self, name: str):
        return self.read(name)[0, 0]

    def numbers(self, name: str) -> np.ndarray:
        a = self.read(name)
        bad = [v for v in a.ravel() if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise XlgptError(f"{name} holds non-numbers after recalculation (e.g. {bad[0]!r}); the engine could not compute it")
        return a.astype(np.float64)

    def set(self, name: str, value, i: int = 0) -> None:
        """Store an input in the i-th cell of the named range (down a column, or along a row)."""
        sheet, ref = self.names[name]
        self.session.set_cell(sheet, nth_cell(ref, i), value)

    def __enter__(self) -> "Workbook":
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()

    def tokenizer(self) -> Tokenizer:
        """The vocabulary as stored in the workbook (id -> byte-level token), and its merges when the
        workbook tokenizes in the sheet."""
        tokens = [str(s) for s in self.read("vocab_token").ravel()]
        encoder = {s: i for i, s in enumerate(tokens)}
        merges = []
        if self.has("merges_left"):
            left, right = (self.numbers(n).ravel().astype(int) for n in ("merges_left", "merges_right"))
            merges = [(tokens[a], tokens[b]) for a, b in zip(left, right)]
        return Tokenizer(encoder=encoder, merges=merges, eot_id=encoder.get(EOT))


def open_book(path, engine: str, progress: bool = False, snapshot: bool = True) -> Workbook:
    path = Path(path)
    if not path.is_file():
        raise XlgptError(f"no such workbook: {path}")
    names = defined_names(path)
    return Workbook(path, open_workbook(path, engine, progress=progress, snapshot=snapshot), names)


def set_prompt(wb: Workbook, prompt: str) -> None:
    if wb.has("tokens_input"):
        raise XlgptError("this workbook was built with --python-tokenizer: its token ids are input cells, so the sheet "
                         "cannot tokenize a new prompt; rebuild it without that flag")
    wb.set("prompt", prompt)
    wb.session.recalc()


def prediction(wb: Workbook, engine: str) -> dict:
    status = wb.value("status")
    n = wb.numbers("n_tokens")[0, 0]
    n = int(n)
    ids = [int(v) for v in wb.numbers("tokens_ids").ravel()[:n]]
    texts = [("" if v is None else str(v)) for v in wb.read("tokens_text").ravel()[:n]]
    tok = wb.tokenizer()
    result = {"engine": engine, "status": "" if status in (None, "") else str(status), "token_ids": ids,
              "tokens": texts}
    if result["status"]:
        return result
    nid = int(wb.numbers("next_token_id")[0, 0])
    top_ids = [int(v) for v in wb.numbers("top_ids").ravel()]
    top_probs = [float(v) for v in wb.numbers("top_probs").ravel()]
    result.update({
        "next_token_id": nid,
        "next_token": tok.decode([nid]),
        "top": [{"id": i, "token": tok.decode([i]), "prob": p} for i, p in zip(top_ids, top_probs)],
    })
    if wb.has("sampled_token_id"):  # = next_token_id at temperature 0
        sid = int(wb.numbers("sampled_token_id")[0, 0])
        result.update({"sampled_token_id": sid, "sampled_token": tok.decode([sid])})
    if wb.has("lens_top_ids"):  # column j: the residual stream after j blocks (0: the embeddings), through ln_f
        ids = wb.numbers("lens_top_ids")[0].astype(int)
        probs = wb.numbers("lens_top_probs")[0]
        result["lens"] = [{"layer": j, "id": int(i), "token": tok.decode([int(i)]), "prob": float(p)}
                          for j, (i, p) in enumerate(zip(ids, probs))]
    return result


def recalc(path, engine: str, prompt: str | None = None, snapshot: bool = True) -> dict:
    with open_book(path, engine, snapshot=snapshot) as wb:
        if prompt is not None:
            set_prompt(wb, prompt)
        return prediction(wb, engine)
