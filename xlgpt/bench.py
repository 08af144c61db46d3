"""`python -m xlgpt.bench`: measure the writer, a full-size build, full-size recalculation and generation.

    python -m xlgpt.bench                 # everything (~20 minutes with LibreOffice)
    python -m xlgpt.bench --quick         # writer on a 1M-cell slice, and part (5)
    python -m xlgpt.bench --skip-lo --out bench/RESULTS.md

Parts: (1) writer speed, cells/s, ours vs openpyxl write-only on the same slice of float32 (10000 x 1000);
(2) build of random:gpt2 (GPT-2 small's shapes, context 16, the live tokenizer): wall time, peak RSS,
file size; (3) load + recalculation of that file up to the predicted token with IronCalc (from the .xlsx,
then saving and reusing its snapshot, in a cache folder of its own) and LibreOffice: wall time, peak RSS,
and whether the token equals the NumPy reference's; (4) generation with IronCalc: seconds per additional
token; (5) the default workbook (`xlgpt build`) in the formulas engine: cells per tab, wall and CPU time to the
predicted token, peak RSS. Every full-size part runs in a child process that reports its own peak RSS (children included,
e.g. soffice).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL = "random:gpt2"
CONTEXT = 16
PROMPT = "If today is Tuesday, tomorrow is"


def _peak_mb() -> float:
    """Peak RSS of this process (VmHWM: ru_maxrss would include the parent's RSS, kept across fork and
    exec) and of the children it waited for (e.g. soffice)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as f:
            own = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        pass
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024  # kB


def _cpu_s() -> float:
    """CPU seconds of this process and its waited-for children: fairer than wall time on a shared machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ---- (1) writer speed ---------------------------------------------------------------------------------------
def slice_data(rows: int, cols: int) -> np.ndarray:
    return (0.02 * np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)).astype(np.float32)


def ours(a: np.ndarray, path: str) -> float:
    from .xlsx.book import Book
    from .xlsx.writer import write_book

    book = Book()
    book.sheet("w").block(1, 1, a.shape, a)
    t = time.perf_counter()
    write_book(book, path)
    return time.perf_counter() - t


def openpyxl_write_only(a: np.ndarray, path: str) -> float:
    import openpyxl

    t = time.perf_counter()
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("w")
    for row in a:
        ws.append(row.tolist())
    wb.save(path)
    return time.perf_counter() - t


def writer_speed(rows: int, cols: int, tmp: str) -> dict:
    a = slice_data(rows, cols)
    n = a.size
    p1, p2 = os.path.join(tmp, "ours.xlsx"), os.path.join(tmp, "openpyxl.xlsx")
    t1 = ours(a, p1)
    t2 = openpyxl_write_only(a, p2)
    return {"cells": n, "ours_s": t1, "ours_cells_per_s": n / t1, "ours_mb": os.path.getsize(p1) / 1e6,
            "openpyxl_s": t2, "openpyxl_cells_per_s": n / t2, "openpyxl_mb": os.path.getsize(p2) / 1e6,
            "ratio": t2 / t1}


# ---- cells per tab (what the formulas engine pays for) -------------------------------------------------------
def cells_per_tab(path: str) -> dict[str, dict[str, int]]:
    """Per tab of the workbook: stored cells, formulas, and all cells counting every cell an array formula fills."""
    import zipfile

    from .engines.xlsxzip import count_part
    from .xlsx.reader import sheet_parts

    out = {}
    with zipfile.ZipFile(path) as zf:
        for title, part in sheet_parts(zf).items():
            with zf.open(part) as f:
                cells, formulas, extra = count_part(f)
            out[title] = {"stored": cells, "formulas": formulas, "cells": cells + extra}
    return out


# ---- children ---------------------------------------------------------------------------------------------------
def child_build(out: str) -> dict:
    """What `xlgpt build --model random:gpt2` does: load, lay out (live tokenizer), write, NumPy prediction."""
    from . import build as build_mod
    from .stages import BuildOptions

    timings = {}
    write_book = build_mod.write_book

    def timed_write(book, path, **kw):
        timings["cells"] = sum(b.shape[0] * b.shape[1] for s in book.sheets for b in s.blocks)
        t = time.perf_counter()
        write_book(book, path, **kw)
        timings["write_s"] = time.perf_counter() - t

    build_mod.write_book = timed_write
    t0 = time.perf_counter()
    build_mod.build(MODEL, BuildOptions(prompt=PROMPT, context=CONTEXT), out, echo=None)
    return {"seconds": time.perf_counter() - t0, "bytes": os.path.getsize(out), **timings}


def child_reference(_: str) -> dict:
    """The NumPy reference's next token, from the float32 weights (what the build prints)."""
    from .model import load_model
    from .reference import gpt2
    from .stages import BuildOptions, prompt_ids

    model = load_model(MODEL)
    opts = BuildOptions(prompt=PROMPT, context=CONTEXT, live_tokenizer=False)
    ids = prompt_ids(model, opts)
    pad = model.tokenizer.eot_id
    r = gpt2(ids + [pad] * (CONTEXT - len(ids)), model.params, model.config, n_real=len(ids))
    logits = np.asarray(r["lm_head_logits"]).ravel()
    top2 = np.sort(logits)[-2:]
    return {"next_token_id": int(r["next_token_id"][0, 0]), "margin": float(top2[1] - top2[0])}


def child_recalc(path: str, engine: str, snapshot: str = "no") -> dict:
    from .engines import defined_names, open_workbook

    names = defined_names(path)
    t = time.perf_counter()
    with open_workbook(path, engine, snapshot=snapshot == "yes") as s:
        t1 = time.perf_counter()
        sheet, ref = names["next_token_id"]
        value = s.read(sheet, ref.split(":")[0])[0, 0]
        seconds = getattr(s, "seconds", {})
        loaded_from = getattr(s, "loaded_from", "xlsx")
    return {"seconds": t1 - t, "next_token_id": int(float(value)), "engine_seconds": seconds,
            "loaded_from": loaded_from}


def child_default(path: str, cached: str = "yes") -> dict:
    """`xlgpt build` (the default workbook: toy, context 16, live tokenizer) and its cells per tab;
    cached "no": `--no-cached-values` (what storing every formula's value costs)."""
    from . import build as build_mod
    from .stages import BuildOptions

    t = time.perf_counter()
    build_mod.build("toy", BuildOptions(cached_values=cached != "no"), path, echo=None)
    return {"seconds": time.perf_counter() - t, "bytes": os.path.getsize(path), "tabs": cells_per_tab(path)}


def child_generate(path: str, n: str) -> dict:
    from .generate import generate

    t = time.perf_counter()
    g = generate(path, int(n), engine="ironcalc", echo=lambda s: None)
    return {"seconds": time.perf_counter() - t, "load_s": g.load_seconds, "token_s": g.token_seconds,
            "s_per_token": g.seconds_per_token, "ids": list(g)}


RECALC_RUNS = (("ironcalc", "ironcalc, from the .xlsx"), ("ironcalc_save", "ironcalc, first load + saving its snapshot"),
               ("ironcalc_snapshot", "ironcalc, from the snapshot"), ("libreoffice", "libreoffice"))
CHILDREN = {"default": child_default, "build": child_build, "reference": child_reference, "recalc": child_recalc, "generate": child_generate}


def run_child(kind: str, *args: str, timeout: float = 3600, env: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "xlgpt.bench", "--child", kind, *args]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t
    last = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not last:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {p.returncode}: " + " | ".join(tail), "wall_s": wall}
    out = json.loads(last[-1])
    out["wall_s"] = wall
    return out


# ---- report -------------------------------------------------------------------------------------------------------
def machine() -> str:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"numpy {np.__version__}, load average {load:.1f} at the start")


def _section(title: str, part: dict | None, body) -> list[str]:
    """A report section: nothing if the part did not run, its error if it failed, else body(part)."""
    if not part:
        return []
    return [title, "", *([f"failed: {part['error']}", ""] if "error" in part else body(part))]


def fmt_report(res: dict, command: str) -> str:
    lines = ["# xlgpt benchmark", "", f"Command: `{command}`  ", f"Machine: {res['machine']}  ",
             f"Date: {res['date']}", ""]
    w = res.get("writer")
    if w:
        lines += ["## (1) Writer speed: the same slice of float32 weights", "",
                  f"{w['cells']:,} cells ({res['slice'][0]} x {res['slice'][1]}, N(0, 0.02)).", "",
                  "| writer | seconds | cells/s | file MB |", "|---|---|---|---|",
                  f"| xlgpt (numblock deflate) | {w['ours_s']:.2f} | {w['ours_cells_per_s'] / 1e6:.2f} M | {w['ours_mb']:.1f} |",
                  f"| openpyxl write-only | {w['openpyxl_s']:.2f} | {w['openpyxl_cells_per_s'] / 1e6:.2f} M | {w['openpyxl_mb']:.1f} |",
                  "", f"Ratio: **{w['ratio']:.1f}x** faster.", ""]
    lines += _section("## (2) Full-size build", res.get("build"), lambda b: [
        f"`xlgpt build --model {MODEL}` (GPT-2 small's shapes, {b['cells']:,} constant cells), context "
        f"{CONTEXT}, the live in-sheet tokenizer: load model + lay out + write + NumPy prediction.", "",
        "| wall s | of which writing s | CPU s | peak RSS MB | file MB |", "|---|---|---|---|---|",
        f"| {b['wall_s']:.1f} | {b['write_s']:.1f} | {b['cpu_s']:.1f} | {b['peak_mb']:.0f} | {b['bytes'] / 1e6:.0f} |", ""])
    ref = res.get("reference", {})
    rows = []
    for key, label in RECALC_RUNS:
        r = res.get(key)
        if not r:
            continue
        if "error" in r:
            rows.append(f"| {label} | failed: {r['error']} | | | | |")
        else:
            same = "yes" if r.get("next_token_id") == ref.get("next_token_id") else "NO"
            rows.append(f"| {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} | {r['next_token_id']} | {same} |")
    if rows:
        lines += ["## (3) Full-size recalculation to the predicted token", "",
                  "Child process: load the workbook, recalculate, read `next_token_id`. IronCalc three ways: parsing "
                  "the .xlsx (`--no-snapshot`), the first load that also saves its snapshot, and a load from that "
                  "snapshot (engines/snapshot.py). NumPy reference "
                  f"(float32 weights): {ref.get('next_token_id')} (top-2 logit margin {ref.get('margin', float('nan')):.3g}).", "",
                  "| engine | wall s | CPU s | peak RSS MB | next_token_id | equals reference |", "|---|---|---|---|---|---|",
                  *rows, ""]
    loaded = " (from the snapshot)" if "ironcalc_snapshot" in res else ""
    lines += _section("## (4) Generation with IronCalc", res.get("generate"), lambda g: [
        f"Load{loaded} + first recalculation {g['load_s']:.1f} s; then **{g['s_per_token']:.2f} s per additional "
        f"token** ({len(g['ids'])} tokens: " + ", ".join(f"{x:.2f}" for x in g["token_s"]) + " s).", ""])
    d, f = res.get("default"), res.get("formulas")
    lines += _section("## (5) The default workbook in the formulas engine", d, lambda d: [
        "`xlgpt build` (toy, context 16, the live tokenizer), then a child process loads it in the `formulas` engine, "
        "recalculates and reads `next_token_id`. Cells per tab (all: every cell of an array formula counted):", "",
        "| tab | stored cells | formulas | all cells |", "|---|---|---|---|",
        *(f"| {t} | {c['stored']:,} | {c['formulas']:,} | {c['cells']:,} |" for t, c in d["tabs"].items() if c["cells"]),
        f"| total | {sum(c['stored'] for c in d['tabs'].values()):,} | {sum(c['formulas'] for c in d['tabs'].values()):,} "
        f"| {sum(c['cells'] for c in d['tabs'].values()):,} |", "",
        "| engine | wall s | CPU s | peak RSS MB | next_token_id |", "|---|---|---|---|---|",
        (f"| formulas | failed: {f['error']} | | | |" if "error" in f else
         f"| formulas | {f['wall_s']:.1f} | {f['cpu_s']:.1f} | {f['peak_mb']:.0f} | {f['next_token_id']} |") if f else "",
        "", "What the cached values cost (`xlgpt build` with and without `--no-cached-values`):", "",
        "| build | wall s | CPU s | peak RSS MB | file MB |", "|---|---|---|---|---|",
        *(f"| {label} | {b['wall_s']:.1f} | {b['cpu_s']:.1f} | {b['peak_mb']:.0f} | {b['bytes'] / 1e6:.1f} |"
          for label, b in (("with cached values", d), ("--no-cached-values", res.get("default_bare") or {}))
          if "bytes" in b),
        ""])
    lines += ["Wall times depend on the machine's load: the numbers above come from one run.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xlgpt.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="writer speed on a 1M-cell slice only")
    ap.add_argument("--skip-openpyxl", action="store_true", help="our writer only in part (1)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-ironcalc", action="store_true")
    ap.add_argument("--skip-lo", action="store_true", help="no LibreOffice")
    ap.add_argument("--skip-formulas", action="store_true", help="no default workbook in the formulas engine")
    ap.add_argument("--tokens", type=int, default=4, help="tokens generated in part (4); 0 skips it")
    ap.add_argument("--workbook", help="use this full-size workbook instead of building one")
    ap.add_argument("--out", help="also write the report (markdown) here, e.g. bench/RESULTS.md")
    ap.add_argument("--json", help="also write the raw numbers here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        out = CHILDREN[kind](*rest)
        out["peak_mb"] = _peak_mb()
        out["cpu_s"] = _cpu_s()
        print(json.dumps(out))
        return 0

    command = "python -m xlgpt.bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    res: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    rows, cols = (1000, 1000) if args.quick else (10000, 1000)
    res["slice"] = (rows, cols)
    with tempfile.TemporaryDirectory(prefix="xlgpt-bench-") as tmp:
        print(f"(1) writer: {rows} x {cols} float32 ...", file=sys.stderr, flush=True)
        if args.skip_openpyxl:
            a = slice_data(rows, cols)
            t = ours(a, os.path.join(tmp, "ours.xlsx"))
            res["writer_ours_only"] = {"cells": a.size, "ours_s": t, "ours_cells_per_s": a.size / t}
        else:
            res["writer"] = writer_speed(rows, cols, tmp)
        if not args.quick:
            path = args.workbook
            if not path and not args.skip_build:
                path = os.path.join(tmp, "gpt2.xlsx")
                print("(2) full-size build ...", file=sys.stderr, flush=True)
                res["build"] = run_child("build", path)
                if "error" in res["build"]:
                    path = None
            if path:
                res["reference"] = run_child("reference", "x")
                env = {**os.environ, "XLGPT_CACHE_DIR": os.path.join(tmp, "cache")}  # a cold cache, removed after
                for key, label in RECALC_RUNS:
                    engine, _, how = key.partition("_")
                    if not (args.skip_ironcalc if engine == "ironcalc" else args.skip_lo):
                        print(f"(3) recalculation: {label} ...", file=sys.stderr, flush=True)
                        res[key] = run_child("recalc", path, engine, "yes" if how else "no", env=env)
                if args.tokens and not args.skip_ironcalc:
                    print(f"(4) generating {args.tokens} tokens with IronCalc ...", file=sys.stderr, flush=True)
                    res["generate"] = run_child("generate", path, str(args.tokens), env=env)
        if not args.skip_formulas:
            print("(5) the default workbook in the formulas engine ...", file=sys.stderr, flush=True)
            default = os.path.join(tmp, "toy.xlsx")
            res["default"] = run_child("default", default)
            res["default_bare"] = run_child("default", os.path.join(tmp, "toy_bare.xlsx"), "no")
            if "error" not in res["default"]:
                res["formulas"] = run_child("recalc", default, "formulas")
    report = fmt_report(res, command)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
