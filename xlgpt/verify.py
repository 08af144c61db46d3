"""`xlgpt verify`: recalculate a workbook and compare every stage with the NumPy reference.

The reference is computed from the weights exactly as written in the workbook (the decimals the engines
parse), on the token ids the sheet itself computed, so any difference is the spreadsheet's arithmetic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .engines.refs import parse_range
from .errors import XlgptError
from .model import GPT2Config, param_shapes
from .recalc import Workbook, open_book, set_prompt
from .reference import gpt2, sample_token, top_k
from .xlsx.reader import read_names

TOLERANCE = 1e-9  # max |sheet - reference| / max(1, max |reference|), per defined name


@dataclass
class Row:
    stage: str
    name: str
    shape: tuple[int, ...]
    abs_err: float
    rel_err: float

    @property
    def ok(self) -> bool:
        return self.rel_err <= TOLERANCE


def config_from_names(names: dict[str, tuple[str, str]], shape) -> GPT2Config:
    n_layer = sum(1 for n in names if re.fullmatch(r"h\d+_ln_1_w", n))
    n_head = sum(1 for n in names if re.fullmatch(r"block_0_scores_h\d+", n))
    V, C = shape("wte")
    n_ctx = shape("wpe")[0]
    if not (n_layer and n_head and C):
        raise XlgptError("this workbook lacks the tensors xlgpt writes (wte, h0_ln_1_w, block_0_scores_h0 ...)")
    return GPT2Config(n_layer, n_head, C, n_ctx, V)


def read_params(wb: Workbook, cfg: GPT2Config) -> dict[str, np.ndarray]:
    """Weights as stored in the file (the decimals the engines parse), each sheet decompressed once."""
    shapes = param_shapes(cfg)
    return {name: a.reshape(shapes[name]) for name, a in read_names(wb.path, list(shapes)).items()}


def steering(wb: Workbook, n: int) -> tuple[int, np.ndarray] | None:
    if not wb.has("steer_on") or not bool(wb.value("steer_on")):
        return None
    layer = int(wb.numbers("steer_layer")[0, 0])
    coef = float(wb.numbers("steer_coef")[0, 0])
    vec = wb.numbers("steer_vector").ravel()
    positions = int(wb.numbers("steer_positions")[0, 0])
    mask = np.ones((n, 1)) if positions == 0 else (np.arange(n) < positions)[:, None].astype(float)
    return layer, coef * vec[None, :] * mask


def compare(sheet: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ref = np.asarray(ref, dtype=np.float64).reshape(sheet.shape)
    err = float(np.max(np.abs(sheet - ref))) if sheet.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    return err, err / scale


def stage_of(name: str) -> str:
    m = re.match(r"(block_\d+)_", name)
    if m:
        return m.group(1)
    return name.split("_")[0] if not name.startswith(("ln_f", "lm_head", "next_token")) else (
        "ln_f" if name.startswith("ln_f") else "lm_head" if name.startswith("lm_head") else "prediction")


def verify(path, engine: str, prompt: str | None = None, snapshot: bool = True) -> dict:
    with open_book(path, engine, snapshot=snapshot) as wb:
        if prompt is not None:
            set_prompt(wb, prompt)
        status = wb.value("status")
        if status not in (None, ""):
            raise XlgptError(f"the workbook reports: {status}")

        def shape(name):
            r1, c1, r2, c2 = parse_range(wb.names[name][1])
            return r2 - r1 + 1, c2 - c1 + 1

        cfg = config_from_names(wb.names, shape)
        ids = [int(v) for v in wb.numbers("tokens_ids").ravel()]
        n = int(wb.numbers("n_tokens")[0, 0])
        params = read_params(wb, cfg)
        lens = {}
        if wb.has("lens_target") and wb.has("lens_top_ids"):
            lens = {"lens_target": int(wb.numbers("lens_target")[0, 0]), "lens_k": shape("lens_top_ids")[0]}
        ref = gpt2(ids, params, cfg, n_real=n, steer=steering(wb, len(ids)), **lens)
        rows = []
        for name, value in ref.items():
            if not wb.has(name):
                continue
            got = wb.numbers(name)
            err, rel = compare(got, value)
            rows.append(Row(stage_of(name), name, got.shape, err, rel))
        want_top = [int(i) for i in top_k(ref["lm_head_logits"], wb.numbers("top_ids").size)]
        got_top = [int(v) for v in wb.numbers("top_ids").ravel()]
        sample = None
        if wb.has("sampled_token_id"):  # the draw the sheet used, read back (RAND() changes on every recalc)
            temperature, k, u = (float(wb.numbers(nm)[0, 0]) for nm in ("temperature", "sample_top_k", "sample_u"))
            sample = {"sheet": int(wb.numbers("sampled_token_id")[0, 0]),
                      "ref": sample_token(ref["lm_head_logits"], temperature, int(k), u),
                      "temperature": temperature, "top_k": int(k), "u": u}
        tokens = None
        if wb.has("merges_left"):  # the sheet tokenized the prompt: compare with the Python tokenizer
            tok = wb.tokenizer()
            bos = [tok.eot_id] if bool(wb.value("bos")) else []
            tokens = {"sheet": ids[:n], "python": bos + tok.encode(str(wb.value("prompt") or ""))}
        return {"engine": engine, "rows": rows, "n_tokens": n, "token_ids": ids[:n], "sample": sample, "tokens": tokens,
                "next_token_id": int(wb.numbers("next_token_id")[0, 0]),
                "ref_next_token_id": int(ref["next_token_id"][0, 0]),
                "top_ok": got_top == want_top, "top": got_top, "ref_top": want_top}


def report(result: dict) -> tuple[str, bool]:
    """A per-stage table of the largest errors; ok when every stage is within tolerance."""
    stages: dict[str, list[Row]] = {}
    for row in result["rows"]:
        stages.setdefault(row.stage, []).append(row)
    lines = [f"{'stage':<14}{'names':>6}{'cells':>10}{'max abs error':>16}{'max rel error':>16}  ok"]
    ok = True
    for stage, rows in stages.items():
        worst = max(rows, key=lambda r: r.rel_err)
        cells = sum(int(np.prod(r.shape)) for r in rows)
        good = all(r.ok for r in rows)
        ok &= good
        lines.append(f"{stage:<14}{len(rows):>6}{cells:>10}{max(r.abs_err for r in rows):>16.3e}{worst.rel_err:>16.3e}  "
                     + ("yes" if good else f"NO ({worst.name})"))
    same = result["next_token_id"] == result["ref_next_token_id"]
    ok &= same and result["top_ok"]
    tokens = result.get("tokens")
    if tokens is not None:
        same_tokens = tokens["sheet"] == tokens["python"]
        ok &= same_tokens
        lines.append(f"tokens ({len(tokens['sheet'])}): the sheet's tokenizer "
                     + ("equals the Python (tiktoken-equal) tokenizer" if same_tokens
                        else f"DIFFERS: {tokens['sheet']} vs {tokens['python']}"))
    lines.append(f"next token id: sheet {result['next_token_id']}, reference {result['ref_next_token_id']}"
                 + ("" if same else "  MISMATCH"))
    lines.append(f"top-k ids: {'equal' if result['top_ok'] else 'DIFFER: ' + str(result['top']) + ' vs ' + str(result['ref_top'])}")
    sample = result.get("sample")
    if sample:
        good = sample["sheet"] == sample["ref"]
        ok &= good
        lines.append(f"sampled token id (temperature {sample['temperature']:g}, top-k {sample['top_k']}, u {sample['u']:.6g}): "
                     f"sheet {sample['sheet']}, reference {sample['ref']}" + ("" if good else "  MISMATCH"))
    lines.append(f"verdict ({result['engine']}): " + ("every stage equals the NumPy reference within "
                                                        f"{TOLERANCE:g} (relative)" if ok else "MISMATCH"))
    return "\n".join(lines), ok
