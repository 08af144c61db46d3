"""Bad input, as a new user gives it: for every case the command exits with the expected code and one line
on stderr naming the problem, prints no traceback, leaves an existing output byte-identical and leaves no
temporary file. Each case runs the real CLI in its own process and its own folder (a pool of a few)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.conftest import build_tiny
from xlgpt.model import load_model, save_folder

ROOT = Path(__file__).resolve().parents[1]
SUR = b"a\xffb"  # invalid UTF-8: Python's argv holds a lone surrogate
# (name, argv, exit code, what the line says); {out} is an existing workbook in the case's folder, {book} a
# tiny workbook to recalculate, {full} one whose context is full, {toy} the default toy workbook, {ids} a
# --python-tokenizer workbook, {d} the
# case's folder, {m:...} a model folder, {v:...} a steering vector
CASES = [
    # -- models
    ("tiny heads=0", "build --model tiny:heads=0", 2, "tiny model"),
    ("tiny embd wider than the grid", "build --model tiny:embd=8192,heads=4", 2, "columns"),
    ("tiny a billion layers", "build --model tiny:layers=1000000000", 2, "weight cells"),
    ("GPT-2 XL's shapes: no engine here can recalculate it", "build --model random:gpt2-xl", 2, "to recalculate"),
    ("tiny ctx=0", "build --model tiny:ctx=0", 2, "tiny model"),
    ("tiny unknown option", "build --model tiny:wide=3", 2, "bad tiny model option"),
    ("model is a file", "build --model {book}", 2, "is a file"),
    ("model folder missing", "build --model ./no/such/folder", 2, "does not exist"),
    ("random: unknown shape", "build --model random:gpt5", 2, "unknown shape"),
    ("config n_layer 0", "build --model {m:n_layer=0}", 2, "n_layer"),
    ("config n_layer -1", "build --model {m:n_layer=-1}", 2, "n_layer"),
    ("config n_layer 1e9", "build --model {m:n_layer=1000000000}", 2, "holds 2 layers"),
    ("config n_layer below the weights", "build --model {m:n_layer=1}", 2, "holds 2 layers"),
    ("config n_layer a string", 'build --model {m:n_layer="2"}', 2, "not a GPT-2 config"),
    ("config n_layer 1.5", "build --model {m:n_layer=1.5}", 2, "not a GPT-2 config"),
    ("config n_head 0", "build --model {m:n_head=0}", 2, "n_head"),
    ("config n_embd not a multiple of n_head", "build --model {m:n_head=3}", 2, "multiple of n_head"),
    ("config epsilon NaN", "build --model {m:layer_norm_epsilon=NaN}", 2, "layer_norm_epsilon"),
    ("config epsilon 0", "build --model {m:layer_norm_epsilon=0}", 2, "layer_norm_epsilon"),
    ("config epsilon negative", "build --model {m:layer_norm_epsilon=-1e-5}", 2, "layer_norm_epsilon"),
    ("config vocab_size wrong", "build --model {m:vocab_size=7}", 2, "vocab.json has"),
    ("config not JSON", "build --model {m:notjson}", 2, "not a GPT-2 config"),
    ("config other architecture", 'build --model {m:model_type="llama"}', 2, "not gpt2"),
    ("untied lm_head", "build --model {m:lm_head}", 2, "lm_head.weight differs"),
    ("integer tensor", "build --model {m:int}", 2, "I64"),
    ("boolean tensor", "build --model {m:bool}", 2, "BOOL"),
    ("pickled weights only", "build --model {m:pickle}", 2, "never unpickles"),
    ("NaN in the weights", "build --model {m:nan}", 2, "NaN"),
    # -- build options
    ("--show-top 0", "build --show-top 0", 2, "--show-top"),
    ("--show-top negative", "build --show-top -3", 2, "--show-top"),
    ("--max-chars below the prompt", "build --max-chars 3", 2, "--max-chars"),
    ("--max-chars negative", "build --max-chars -1", 2, "--max-chars"),
    ("--max-chars over a cell", "build --max-chars 40000", 2, "--max-chars"),
    ("--max-word-bytes below the prompt", "build --max-word-bytes 3", 2, "' tomorrow' is 9 UTF-8 bytes"),
    ("--max-word-bytes 0", "build --max-word-bytes 0", 2, "--max-word-bytes"),
    ("--max-word-bytes negative", "build --max-word-bytes -5", 2, "--max-word-bytes"),
    ("--temperature negative", "build --temperature -1", 2, "--temperature"),
    ("--temperature NaN", "build --temperature nan", 2, "--temperature"),
    ("--top-k negative", "build --top-k -1", 2, "--top-k"),
    ("--seed 1.5", "build --seed 1.5", 2, "[0, 1)"),
    ("--seed negative", "build --seed -0.1", 2, "[0, 1)"),
    ("--context 0", "build --context 0", 2, "--context"),
    ("--context past n_ctx", "build --context 99", 2, "n_ctx"),
    ("prompt longer than the context", "build --context 2", 2, "the context is 2"),
    ("prompt longer than n_ctx", "build --model tiny:ctx=4", 2, "n_ctx"),
    ("empty prompt", ["build", "--prompt", ""], 2, "empty"),
    ("prompt with a C0 control", ["build", "--prompt", "a\x01b"], 2, "U+0001"),
    ("prompt with invalid UTF-8", [b"build", b"--prompt", SUR], 2, "lone surrogate"),
    ("prompt with an Excel escape", ["build", "--prompt", "a _x0041_ b"], 2, "_x0041_"),
    ("prompt over Excel's cell limit", ["build", "--prompt", "a" * 40000], 2, "32,767"),
    ("--out empty", ["build", "--out", ""], 2, "--out is empty"),
    ("--out not .xlsx", "build --out {d}/x.txt", 2, ".xlsx"),
    ("--out folder missing", "build --out {d}/nope/x.xlsx", 2, "does not exist"),
    ("--out is a folder", "build --out {d}/dir.xlsx", 2, "folder"),
    ("--steer-coef without a vector", "build --steer-coef 2", 2, "need a vector"),
    ("--steer-coef huge", "build --steer-vector {v:ok} --steer-layer 0 --steer-coef 1e300", 2, "--steer-coef"),
    ("steering vector that overflows", "build --steer-vector {v:huge} --steer-layer 0", 2, "overflow"),
    ("steering vector with NaN", "build --steer-vector {v:nan} --steer-layer 0", 2, "NaN"),
    ("steering vector of the wrong size", "build --steer-vector {v:short} --steer-layer 0", 2, "shape"),
    ("--steer-layer outside the model", "build --steer-vector {v:ok} --steer-layer 5", 2, "outside"),
    ("--steer-positions negative", "build --steer-vector {v:ok} --steer-layer 0 --steer-positions -1", 2,
     "--steer-positions"),
    ("--show-top 0 with --python-tokenizer", "build --python-tokenizer --show-top 0", 2, "--show-top"),
    # -- recalc
    ("recalc missing workbook", "recalc {d}/missing.xlsx", 2, "no such workbook"),
    ("recalc not a zip", "recalc {d}/text.xlsx", 2, "text.xlsx"),
    ("recalc empty path", ["recalc", ""], 2, "empty"),
    ("recalc prompt with invalid UTF-8", [b"recalc", b"{book}", b"--prompt", SUR], 2, "lone surrogate"),
    ("recalc --prompt on a --python-tokenizer book", "recalc {ids} --prompt hello", 2, "--python-tokenizer"),
    ("recalc --engine formulas on a book past its limit", "recalc {toy} --engine formulas", 2, "cells"),
    # -- verify
    ("verify missing workbook", "verify {d}/missing.xlsx", 2, "no such workbook"),
    ("verify not a zip", "verify {d}/text.xlsx", 2, "text.xlsx"),
    ("verify prompt with invalid UTF-8", [b"verify", b"{book}", b"--prompt", SUR], 2, "lone surrogate"),
    ("verify --engine formulas on a book past its limit", "verify {toy} --engine formulas", 2, "cells"),
    # -- generate
    ("generate --seed negative", "generate {book} --seed -5", 2, "--seed"),
    ("generate --temperature negative", "generate {book} --temperature -1", 2, "--temperature"),
    ("generate --top-k negative", "generate {book} --top-k -1", 2, "--top-k"),
    ("generate --tokens negative", "generate {book} --tokens -1", 2, "--tokens"),
    ("generate missing workbook", "generate {d}/missing.xlsx", 2, "missing.xlsx"),
    ("generate past the context", "generate {full} --tokens 3", 2, "context is full"),
    # -- tokenize
    ("tokenize invalid UTF-8", [b"tokenize", SUR], 2, "lone surrogate"),
    ("tokenize with a bad model", "tokenize hi --model tiny:heads=0", 2, "tiny model"),
    ("tokenize with a model file", "tokenize hi --model {book}", 2, "is a file"),
    ("tokenize into a closed pipe", "tokenize hello --model tiny", 2, "broken pipe"),
]
OUT_IS_OLD = {"build"}  # commands whose output is {out} unless the case names its own --out


def _model_folders(root: Path) -> dict[str, Path]:
    """Variants of a saved tiny model (2 layers), one per {m:...} in CASES."""
    base = save_folder(load_model("tiny"), root / "tiny")
    folders = {}
    for case in CASES:
        args = case[1] if isinstance(case[1], str) else ""
        for key in [a[3:-1] for a in args.split() if a.startswith("{m:")]:
            f = root / f"m{len(folders)}"
            shutil.copytree(base, f)
            cfg = json.loads((f / "config.json").read_text())
            weights = load_file(str(f / "model.safetensors"))
            if "=" in key:
                k, v = key.split("=", 1)
                cfg[k] = json.loads(v)
            elif key == "notjson":
                (f / "config.json").write_text("{n_layer: 2")
            elif key == "lm_head":
                weights["lm_head.weight"] = weights["wte.weight"] + 1
            elif key == "int":
                weights["h.0.ln_1.bias"] = np.zeros(weights["h.0.ln_1.bias"].shape, dtype=np.int64)
            elif key == "bool":
                weights["h.0.ln_1.weight"] = np.ones(weights["h.0.ln_1.weight"].shape, dtype=bool)
            elif key == "pickle":
                (f / "model.safetensors").rename(f / "pytorch_model.bin")
            elif key == "nan":
                weights["h.1.mlp.c_fc.weight"][3, 4] = np.nan
            if key not in ("notjson", "pickle"):
                (f / "config.json").write_text(json.dumps(cfg))
                save_file(weights, str(f / "model.safetensors"))
            folders[key] = f
    return folders


def _vectors(root: Path) -> dict[str, Path]:
    C = load_model("tiny").config.n_embd
    vs = {"ok": np.ones(C), "huge": np.full(C, 1e200), "nan": np.full(C, np.nan), "short": np.ones(C - 1)}
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in vs.items():
        out[k] = root / f"{k}.npy"
        np.save(out[k], v)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    book = root / "book.xlsx"
    build_tiny(book, prompt="one two")
    toy = root / "toy.xlsx"
    build_tiny(toy, "toy", prompt="If today is Tuesday, tomorrow is")  # the default workbook
    ids = root / "ids.xlsx"
    build_tiny(ids, prompt="one two", live_tokenizer=False)
    full = root / "full.xlsx"
    build_tiny(full, prompt="one two", context=len(load_model("tiny").tokenizer.encode("one two")))
    return dict(root=root, book=book, toy=toy, ids=ids, full=full, m=_model_folders(root / "models"),
                v=_vectors(root / "vectors"))


def _expand(arg, d: Path, w: dict, files: dict[str, Path]) -> bytes:
    text = os.fsdecode(arg) if isinstance(arg, bytes) else arg
    for key in ("book", "toy", "ids", "full"):
        if "{" + key + "}" in text:
            files[key] = d / w[key].name
            text = text.replace("{" + key + "}", str(files[key]))
    text = text.replace("{d}", str(d)).replace("{out}", str(d / "old.xlsx"))
    if text.startswith("{m:"):
        text = str(w["m"][text[3:-1]])
    if text.startswith("{v:"):
        text = str(w["v"][text[3:-1]])
    return os.fsencode(text)


def _run(i: int, case, w: dict) -> dict:
    name, args, code, says = case
    d = w["root"] / f"case{i:03d}"
    d.mkdir()
    (d / "dir.xlsx").mkdir()
    (d / "text.xlsx").write_text("not a workbook")
    files: dict[str, Path] = {}
    argv = [_expand(a, d, w, files) for a in (args.split() if isinstance(args, str) else args)]
    for key, path in files.items():
        shutil.copy(w[key], path)
    if argv[0] == b"build":
        if b"--out" not in argv:
            argv += [b"--out", os.fsencode(d / "old.xlsx")]
        if b"--model" not in argv:
            argv += [b"--model", b"tiny"]
        argv.append(b"--quiet")
    old = d / "old.xlsx"
    shutil.copy(w["book"], old)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLGPT_CACHE_DIR=str(d / "cache"))
    env.pop("XLGPT_DEBUG", None)
    if "past its limit" in name:  # the default book (~0.5M cells) is within formulas' 2M: lower the limit
        env["XLGPT_FORMULAS_MAX_CELLS"] = "100000"
    stdout = subprocess.PIPE
    if "closed pipe" in name:
        r, stdout = os.pipe()
        os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "xlgpt", *argv], stdout=stdout, stderr=subprocess.PIPE,
                           env=env, cwd=d, timeout=300)
    finally:
        if stdout is not subprocess.PIPE:
            os.close(stdout)
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    return dict(name=name, code=p.returncode, want=code, says=says, err=p.stderr.decode("utf-8", "replace"),
                out=(p.stdout or b"").decode("utf-8", "replace"), changed=sorted(k for k in before if before[k] != after.get(k)),
                new=sorted(set(after) - set(before)))


@pytest.fixture(scope="module")
def results(world):
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda ic: _run(*ic, world), enumerate(CASES)))


def test_there_are_enough_cases():
    assert len(CASES) >= 60
    assert {c[1].split()[0] if isinstance(c[1], str) else os.fsdecode(c[1][0]) for c in CASES} == {
        "build", "recalc", "verify", "generate", "tokenize"}


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_bad_input(results, i):
    r = results[i]
    lines = r["err"].splitlines()
    assert "Traceback" not in r["err"] + r["out"], r["err"]
    assert r["code"] == r["want"], r["err"]
    assert len(lines) == 1, r["err"]
    assert lines[0].startswith("xlgpt: error: ") and "internal error" not in lines[0], lines[0]
    assert r["says"] in lines[0], lines[0]
    assert not r["changed"], f"changed: {r['changed']}"  # the existing output and every input byte-identical
    assert not r["new"], f"left behind: {r['new']}"  # no temporary file, no half-written output
