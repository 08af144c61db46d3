"""`xlgpt verify`: recalculate a workbook and check every formula cell against the value it must compute.

The expectation is the workbook itself rebuilt in memory from what the file states: its configuration (the
named cells of the start tab), its weights exactly as written (the decimals the engines parse), its
vocabulary and merges, and its inputs (prompt, BOS, sampling, steering, lens target). Every stage states the
value of each formula it writes (the NumPy reference for the model, a Python model of the tokenizer's steps,
labels repeating their cells), so verify compares them all: numbers within the tolerance, ids, texts and
booleans exactly. A formula cell without an expectation, a missing or unexpected formula, and a missing,
unexpected or moved defined name each fail the proof.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import contract
from .contract import T
from .engines.refs import parse_range
from .errors import XlgptError
from .model import GPT2Config, Model, param_shapes
from .recalc import Workbook, open_book, set_prompt
from .stages import BuildOptions, Steering, build_book
from .xlsx.book import NOVALUE, Between, Formula, Range
from .xlsx.reader import formula_cells, read_names

TOLERANCE = 1e-9  # |sheet - expected| / max(1, max |expected| over the formula's range)


@dataclass
class TabCheck:
    tab: str
    cells: int = 0
    worst: float = 0.0  # the largest scaled numeric error
    failures: int = 0
    first: str = ""  # the first failing cell: address, expected, actual

    @property
    def ok(self) -> bool:
        return self.failures == 0


@dataclass
class Result:
    engine: str
    tabs: list[TabCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # names and formula cells that do not match the contract
    token_ids: list[int] = field(default_factory=list)
    next_token_id: int = -1
    expected_next_token_id: int = -1
    sampled: tuple[int, int] | None = None  # (sheet, expected) when the sheet samples
    u: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and all(t.ok for t in self.tabs) and self.next_token_id == self.expected_next_token_id


# ---- what the workbook states ----------------------------------------------------------------------------
def read_config(wb: Workbook) -> tuple[GPT2Config, str, str]:
    need = [T.n_layer(), T.n_head(), T.n_embd(), T.vocab_size(), T.n_ctx(), T.layer_norm_epsilon(), T.model_name()]
    missing = [n for n in need if not wb.has(n)]
    if missing:
        raise XlgptError(f"{wb.path} does not state its configuration (no defined name {missing[0]!r}): "
                         "not a workbook written by this version of xlgpt")
    whole = {n: wb.numbers(n)[0, 0] for n in need[:5]}
    if any(not float(v).is_integer() or v < 1 for v in whole.values()):
        raise XlgptError(f"{wb.path} states an impossible configuration: {whole}")
    eps = float(wb.numbers(T.layer_norm_epsilon())[0, 0])
    n_layer, n_head, n_embd, vocab, n_ctx = (int(whole[n]) for n in need[:5])
    cfg = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_ctx=n_ctx, vocab_size=vocab,
                     layer_norm_epsilon=eps)
    return cfg, str(wb.value(T.model_name()) or ""), str(wb.value(T.model_source()) or "")


def read_model(wb: Workbook) -> Model:
    cfg, name, source = read_config(wb)
    shapes = param_shapes(cfg)
    params = {k: a.reshape(shapes[k]) for k, a in read_names(wb.path, list(shapes)).items()}
    return Model(name, cfg, params, wb.tokenizer(), source=source)


def read_options(wb: Workbook, formulas: dict[str, dict]) -> BuildOptions:
    """The build options the workbook's input cells state now (a learner may have changed them)."""
    def is_formula(name: str) -> bool:
        sheet, ref = wb.names[name]
        r, c, _, _ = parse_range(ref)
        return (r, c) in formulas.get(sheet, {})

    num = lambda name: float(wb.numbers(name)[0, 0])  # noqa: E731
    live = not wb.has(T.tokens_input())
    opts = BuildOptions(
        prompt=str(wb.value(T.prompt()) or ""), context=int(num(T.context())), live_tokenizer=live,
        max_chars=int(num(T.max_chars())), max_word_bytes=int(num(T.max_word_bytes())),
        bos=bool(wb.value(T.bos())), top_k=int(num(T.show_top())),
        temperature=num(T.temperature()), sample_top_k=int(num(T.sample_top_k())))
    u = num(T.sample_u())
    if is_formula(T.sample_u()):
        opts.draw = u  # RAND(): the expectations follow the draw the sheet made
    else:
        opts.seed = u
    if not is_formula(T.lens_target()):
        opts.lens_target = int(num(T.lens_target()))
    if not live:
        typed = [v for v in wb.read(T.tokens_input()).ravel() if _number(v) is not None]
        opts.token_ids = [int(v) for v in typed]
    opts.steer = Steering(layer=int(num(T.steer_layer())), coef=num(T.steer_coef()),
                          vector=wb.numbers(T.steer_vector()).ravel(), on=bool(wb.value(T.steer_on())),
                          positions=int(num(T.steer_positions())))
    return opts


# ---- comparing ---------------------------------------------------------------------------------------------
def _kind(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return contract.BOOL
    if isinstance(v, (int, np.integer)):
        return contract.ID
    if isinstance(v, (float, np.floating)):
        return contract.NUMBER
    if isinstance(v, str):
        return contract.TEXT
    return "?"


def _number(v) -> float | None:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    return float(v)


def check_cell(want, got, scale: float) -> tuple[bool, float]:
    """Whether the engine's value is the expected one; the scaled error for numbers (0 otherwise)."""
    if want is NOVALUE:
        return False, 0.0
    if isinstance(want, Between):
        g = _number(got)
        return g is not None and want.lo <= g < want.hi, 0.0
    kind = _kind(want)
    if kind == contract.TEXT:
        return ("" if got is None else got) == want, 0.0
    if kind == contract.BOOL:
        return isinstance(got, (bool, np.bool_)) and bool(got) == bool(want), 0.0
    g = _number(got)
    if g is None or not math.isfinite(g):
        return False, math.inf
    if kind == contract.ID:
        return g == float(want), 0.0 if g == float(want) else math.inf
    err = abs(g - float(want)) / scale
    return err <= TOLERANCE, err


def _show(v) -> str:
    return "(no expected value)" if v is NOVALUE else repr(v)


def compare_tab(tab: str, items: list[tuple[Range, np.ndarray]], values: np.ndarray, origin: tuple[int, int]) -> TabCheck:
    out = TabCheck(tab)
    r0, c0 = origin
    for rng, want in items:
        got = values[rng.r1 - r0:rng.r2 - r0 + 1, rng.c1 - c0:rng.c2 - c0 + 1]
        nums = [abs(float(v)) for v in want.ravel() if _kind(v) == contract.NUMBER and math.isfinite(float(v))]
        scale = max([1.0] + nums)
        for (i, j), w in np.ndenumerate(want):
            out.cells += 1
            ok, err = check_cell(w, got[i, j], scale)
            if err > out.worst and math.isfinite(err):
                out.worst = err
            if not ok:
                out.failures += 1
                if not out.first:
                    out.first = f"{_addr(tab, rng.r1 + i, rng.c1 + j)}: expected {_show(w)}, got {got[i, j]!r}"
    return out


def _addr(sheet: str, r: int, c: int) -> str:
    return Range(sheet, r, c, r, c).abs.replace("$", "")


def check_structure(book, wb: Workbook, formulas: dict[str, dict]) -> list[str]:
    """Defined names and formula cells of the file against the rebuilt book: nothing missing, extra or moved."""
    problems = []
    want = {n: (r.sheet, r.a1) for n, r in book.names.items()}
    have = {n: (s, ref.replace("$", "")) for n, (s, ref) in wb.names.items()}
    lower = {n.lower(): n for n in have}
    for n, where in want.items():
        got = have.get(n) or have.get(lower.get(n.lower(), ""))
        if got is None:
            problems.append(f"defined name {n!r} is missing (it should be {where[0]}!{where[1]})")
        elif got != where:
            problems.append(f"defined name {n!r} refers to {got[0]}!{got[1]}, not {where[0]}!{where[1]}")
    wanted_lower = {n.lower() for n in want}
    for n in have:
        if n.lower() not in wanted_lower:
            problems.append(f"unexpected defined name {n!r} ({have[n][0]}!{have[n][1]})")
    expected: dict[str, dict[tuple[int, int], str | None]] = {}
    for ws in book.sheets:
        cells = expected.setdefault(ws.name, {})
        for (r, c), (v, _) in ws.cells.items():
            if isinstance(v, Formula):
                cells[(r, c)] = None
        for af in ws.arrays:
            cells[(af.rng.r1, af.rng.c1)] = af.rng.a1
    for sheet in set(expected) | set(formulas):
        cells, have_cells = expected.get(sheet, {}), formulas.get(sheet, {})
        extra = sorted(set(have_cells) - set(cells))
        gone = sorted(set(cells) - set(have_cells))
        moved = sorted(k for k in set(cells) & set(have_cells) if cells[k] != have_cells[k])
        for what, keys in (("has a formula nobody expects", extra), ("lost its formula", gone),
                           ("has an array formula of another extent", moved)):
            if keys:
                more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
                problems.append(f"{_addr(sheet, *keys[0])} {what}{more}")
    return problems


def verify(path, engine: str, prompt: str | None = None, snapshot: bool = True) -> Result:
    with open_book(path, engine, snapshot=snapshot) as wb:
        if prompt is not None:
            set_prompt(wb, prompt)
        status = wb.value(T.status()) if wb.has(T.status()) else None
        if status not in (None, ""):
            raise XlgptError(f"the workbook reports: {status}")
        model = read_model(wb)
        formulas = formula_cells(wb.path, skip=_param_tabs(model.config))
        opts = read_options(wb, formulas)
        book = build_book(model, opts)
        result = Result(engine)
        result.problems = check_structure(book, wb, formulas)
        by_tab: dict[str, list[tuple[Range, np.ndarray]]] = {}
        for sheet, rng, want in book.formula_cells():
            by_tab.setdefault(sheet, []).append((rng, want))
        for ws in book.sheets:  # in tab order
            items = by_tab.get(ws.name)
            if not items:
                continue
            r1 = min(r.r1 for r, _ in items)
            c1 = min(r.c1 for r, _ in items)
            r2 = max(r.r2 for r, _ in items)
            c2 = max(r.c2 for r, _ in items)
            box = Range(ws.name, r1, c1, r2, c2)
            result.tabs.append(compare_tab(ws.name, items, wb.session.read(ws.name, box.a1), (r1, c1)))
        ids = [_id(v) for v in wb.read(T.tokens_ids()).ravel()]
        result.token_ids = ids[:max(0, _id(wb.value(T.n_tokens())))]
        result.next_token_id = _id(wb.value(T.next_token_id()))
        result.expected_next_token_id = int(book.values(book[T.next_token_id()])[0, 0])
        if opts.temperature > 0:
            result.sampled = (_id(wb.value(T.sampled_token_id())), int(book.values(book[T.sampled_token_id()])[0, 0]))
            result.u = _number(wb.value(T.sample_u()))
        return result


def _id(v) -> int:
    """An id the sheet computed, or -1 where it computed something else (the per-cell check says what)."""
    g = _number(v)
    return int(g) if g is not None and math.isfinite(g) and g.is_integer() else -1


def _param_tabs(cfg: GPT2Config) -> set[str]:
    """Tabs of weights only: read as data (the values the expectations come from), not scanned for formulas."""
    return {t.tab.format(l=i) for t in contract.PARAMETERS.values() for i in range(cfg.n_layer)}


def report(result: Result) -> tuple[str, bool]:
    """Per tab: cells checked, the worst error, the first mismatching cell; then the verdict."""
    lines = [f"{'tab':<14}{'cells':>10}{'worst error':>14}  ok"]
    for t in result.tabs:
        lines.append(f"{t.tab:<14}{t.cells:>10}{t.worst:>14.3e}  " +
                     ("yes" if t.ok else f"NO: {t.failures} cells differ, first {t.first}"))
    for p in result.problems[:20]:
        lines.append(f"structure: {p}")
    if len(result.problems) > 20:
        lines.append(f"structure: ... and {len(result.problems) - 20} more")
    lines.append(f"next token id: sheet {result.next_token_id}, expected {result.expected_next_token_id}"
                 + ("" if result.next_token_id == result.expected_next_token_id else "  MISMATCH"))
    if result.sampled is not None:
        s, e = result.sampled
        lines.append(f"sampled token id (u {result.u!r}): sheet {s}, expected {e}" + ("" if s == e else "  MISMATCH"))
    cells = sum(t.cells for t in result.tabs)
    lines.append(f"verdict ({result.engine}): " + (
        f"all {cells:,} formula cells equal their expected values (numbers within {TOLERANCE:g} relative)"
        if result.ok else "MISMATCH"))
    return "\n".join(lines), result.ok
