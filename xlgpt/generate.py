"""`xlgpt generate`: let the workbook write text, one token per recalculation.

The workbook is loaded once. For each new token the predicted id is typed into the next token cell
(the sheet's own tokenizer is bypassed there), the engine recalculates, and the new prediction is read:

  * workbooks tokenized in Python: the id goes into the next `tokens_input` cell (n_tokens counts them);
  * live-tokenizer workbooks: the `tokens_ids` cell at position n gets the id as a number (overriding
    its formula) and `n_tokens` gets n + 1 (also a number: the prompt no longer decides it).

The prediction read is `sampled_token_id` when the workbook samples (temperature > 0 uses the cells
`temperature`, `sample_top_k`, `sample_u`, set here if present), else `next_token_id`. Text is decoded
with the vocabulary stored in the workbook (`vocab_token`, GPT-2's byte-level strings).
"""
from __future__ import annotations

import codecs
import time

import numpy as np

from .errors import XlgptError


class Generated(list):
    """The new token ids, with timings: load_seconds (load + first recalculation), token_seconds
    (per new token: set cells, recalculate, read), and the texts."""

    load_seconds: float = 0.0
    token_seconds: list[float]
    texts: list[str]

    @property
    def seconds_per_token(self) -> float:
        times = self.token_seconds[1:] or self.token_seconds  # the first may include one-off work
        return float(np.mean(times)) if times else float("nan")


def generate(path, n_tokens: int, engine: str = "ironcalc", temperature: float = 0.0, top_k: int = 0,
             seed: int | None = None, echo=print, show_prompt: bool = True, snapshot: bool = True) -> Generated:
    """Generate n_tokens tokens with the workbook itself; returns their ids (a Generated list).

    echo(text) is called with the prompt's text (if show_prompt) and then each new token's text as it
    comes (with print, on one line). Raises XlgptError when the context is full."""
    from .engines import defined_names, open_workbook
    from .engines.refs import parse_range
    from .recalc import Workbook

    if n_tokens < 0:
        raise XlgptError("the number of tokens to generate must be at least 0")
    names = defined_names(path)  # checked before the (long) load
    for need in ("tokens_ids", "n_tokens", "next_token_id", "vocab_token"):
        if need not in names:
            raise XlgptError(f"{path} is not an xlgpt GPT-2 workbook (no defined name {need!r})")
    out = Generated()
    out.token_seconds, out.texts = [], []
    emit = (lambda s: print(s, end="", flush=True)) if echo is print else echo
    rng = np.random.default_rng(seed)

    t0 = time.perf_counter()
    with Workbook(path, open_workbook(path, engine, snapshot=snapshot), names) as wb:
        out.load_seconds = time.perf_counter() - t0
        tok = wb.tokenizer()  # the vocabulary stored in the workbook, to print text
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def text_of(i: int) -> str:
            if not 0 <= i < tok.vocab_size:
                raise XlgptError(f"the workbook predicted token id {i}, outside its vocabulary of {tok.vocab_size}")
            return decoder.decode(tok.token_bytes(i))

        def number(name: str) -> int:
            return int(wb.numbers(name)[0, 0])

        sampling = all(wb.has(n) for n in ("temperature", "sample_top_k", "sample_u", "sampled_token_id"))
        if temperature and not sampling:
            raise XlgptError("this workbook cannot sample (no temperature cell): rebuild it with a current xlgpt, "
                             "or generate with temperature 0")
        if sampling:
            wb.set("temperature", float(temperature))
            wb.set("sample_top_k", int(top_k))
        answer = "sampled_token_id" if sampling else "next_token_id"
        python_tokens = wb.has("tokens_input")
        r1, c1, r2, c2 = parse_range(names["tokens_ids"][1])
        capacity = (r2 - r1 + 1) * (c2 - c1 + 1)

        n = number("n_tokens")
        if wb.has("status"):
            st = wb.value("status")
            if isinstance(st, str) and st:
                raise XlgptError(f"the workbook reports: {st}")
        current = [int(float(v)) for v in wb.read("tokens_ids").ravel()[:n]]  # rows past n may hold no id
        if show_prompt:
            emit("".join(text_of(i) for i in current))
        if sampling and temperature:
            wb.set("sample_u", float(rng.random()))
            wb.session.recalc()
        for k in range(n_tokens):
            if n >= capacity:
                raise XlgptError(f"the context is full: the workbook holds {capacity} tokens and has {n} "
                                 f"(generated {k} of {n_tokens}); rebuild it with a larger --context")
            t = time.perf_counter()
            new = number(answer)
            if python_tokens:
                wb.set("tokens_input", new, n)
            else:
                wb.set("tokens_ids", new, n)
                wb.set("n_tokens", n + 1)
            n += 1
            if sampling and temperature:
                wb.set("sample_u", float(rng.random()))
            wb.session.recalc()
            out.token_seconds.append(time.perf_counter() - t)
            out.append(new)
            piece = text_of(new)
            out.texts.append(piece)
            emit(piece)
        tail = decoder.decode(b"", final=True)
        if tail:
            emit(tail)
    if echo is print:
        print()
    return out
