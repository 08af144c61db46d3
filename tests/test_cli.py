"""The command line: bad input gives one clear line and a non-zero exit, never a traceback or a half-written file."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from xlgpt.cli import main
from xlgpt.model import hf_key, load_model, save_folder
from xlgpt.recalc import open_book

TINY = "tiny:layers=1,heads=1,embd=8,merges=64"


def run(*args):
    """Run the CLI in a subprocess, as a user would."""
    p = subprocess.run([sys.executable, "-m", "xlgpt", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def one_line_error(code, err):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("xlgpt: error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_folder(load_model(TINY), tmp_path_factory.mktemp("model") / "tiny")


def test_build_recalc_json(tmp_path, folder):
    out = tmp_path / "w.xlsx"
    code, stdout, err = run("build", "--model", str(folder), "--prompt", "Hi", "--context", "8", "--out", str(out),
                            "--python-tokenizer")
    assert code == 0, err
    assert "NumPy reference predicts" in stdout and out.exists()
    code, stdout, err = run("recalc", str(out), "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert set(result) >= {"engine", "token_ids", "next_token_id", "next_token", "top"}
    assert result["engine"] == "ironcalc" and result["token_ids"] == load_model(str(folder)).tokenizer.encode("Hi")
    probs = [t["prob"] for t in result["top"]]
    assert probs == sorted(probs, reverse=True) and result["top"][0]["id"] == result["next_token_id"]
    code, stdout, err = run("verify", str(out))
    assert code == 0 and "formula cells equal their expected values" in stdout, stdout + err


def test_missing_model_folder(tmp_path):
    code, _, err = run("build", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x.xlsx"))
    assert "does not exist" in one_line_error(code, err)


def test_incomplete_folder(tmp_path, folder):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_bytes((folder / "config.json").read_bytes())
    code, _, err = run("build", "--model", str(bad), "--out", str(tmp_path / "x.xlsx"))
    assert "missing" in one_line_error(code, err)


def test_pickle_only_folder_is_refused(tmp_path, folder):
    bad = tmp_path / "pickled"
    bad.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        (bad / name).write_bytes((folder / name).read_bytes())
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    code, _, err = run("build", "--model", str(bad), "--out", str(tmp_path / "x.xlsx"))
    assert "safetensors only" in one_line_error(code, err)


def test_corrupt_safetensors(tmp_path, folder):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        (bad / name).write_bytes((folder / name).read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    code, _, err = run("build", "--model", str(bad), "--out", str(tmp_path / "x.xlsx"))
    assert "cannot read" in one_line_error(code, err)


def test_wrong_tensor_shape(tmp_path, folder):
    bad = tmp_path / "shape"
    bad.mkdir()
    for name in ("config.json", "vocab.json", "merges.txt"):
        (bad / name).write_bytes((folder / name).read_bytes())
    tensors = load_file(str(folder / "model.safetensors"))
    key = hf_key("h0_attn_c_attn_w")
    tensors[key] = np.zeros((8, 8), dtype=np.float32)
    save_file(tensors, str(bad / "model.safetensors"))
    code, _, err = run("build", "--model", str(bad), "--out", str(tmp_path / "x.xlsx"))
    assert "shape" in one_line_error(code, err)


def test_prompt_too_long(tmp_path):
    code, _, err = run("build", "--model", TINY, "--prompt", "a b c d e f g h i j", "--context", "4",
                       "--out", str(tmp_path / "x.xlsx"))
    assert "context is 4" in one_line_error(code, err)
    assert not (tmp_path / "x.xlsx").exists()


def test_context_grows_to_fit_the_prompt_unless_given(tmp_path):
    out = tmp_path / "x.xlsx"
    code, stdout, err = run("build", "--model", TINY, "--out", str(out))  # the default prompt: 20 tiny tokens
    assert code == 0 and "20 of 20 tokens" in stdout, err
    code, _, err = run("build", "--model", TINY, "--prompt", "ab " * 20, "--out", str(out))
    assert "reads at most 32" in one_line_error(code, err)


def test_unwritable_output(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    a_dir = tmp_path / "dir.xlsx"
    a_dir.mkdir()
    bad = [tmp_path / "no" / "such" / "x.xlsx", a_file / "x.xlsx", a_dir]  # unwritable even for root
    if not os.access(locked, os.W_OK):  # root ignores permissions
        bad.append(locked / "x.xlsx")
    try:
        for out in bad:
            code, _, err = run("build", "--model", TINY, "--prompt", "Hi", "--out", str(out))
            assert "cannot write" in one_line_error(code, err), out
        assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "dir.xlsx", "locked"]
        assert not any(a_dir.iterdir()) and not any(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_offline_hub_id(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "xlgpt", "build", "--model", "distilgpt2", "--out", str(tmp_path / "x.xlsx")],
                       capture_output=True, text=True, env=env, timeout=120)
    line = one_line_error(p.returncode, p.stderr)
    assert p.returncode == 2 and "local folder" in line


@pytest.mark.parametrize("prompt", ["=1+1", "+cmd", "-2", "@SUM(A1)", "=HYPERLINK(\"http://x\")"])
def test_prompts_are_text_not_formulas(tmp_path, prompt):
    out = tmp_path / "p.xlsx"
    assert main(["build", "--model", TINY, "--prompt", prompt, "--context", "24", "--out", str(out), "--quiet",
                 "--python-tokenizer"]) == 0
    import zipfile
    with zipfile.ZipFile(out) as z:
        xml = z.read("xl/worksheets/sheet1.xml").decode() + z.read("xl/worksheets/sheet2.xml").decode()
    from xml.sax.saxutils import escape
    quote = {'"': "&quot;"}
    assert "<f>" + escape(prompt.lstrip("="), quote) not in xml
    assert "<t>" + escape(prompt, quote) + "</t>" in xml
    with open_book(out, "ironcalc") as wb:
        assert wb.value("prompt") == prompt


def test_failed_build_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "keep.xlsx"
    assert main(["build", "--model", TINY, "--prompt", "Hi", "--out", str(out), "--quiet", "--python-tokenizer"]) == 0
    before = out.read_bytes()
    code = main(["build", "--model", TINY, "--prompt", "bad \x01 control", "--out", str(out), "--quiet",
                 "--python-tokenizer"])
    assert code == 2
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.xlsx"]  # no temporary file left behind


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    import xlgpt.xlsx.writer as writer
    out = tmp_path / "w.xlsx"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "sheet_xml", boom)
    assert main(["build", "--model", TINY, "--prompt", "Hi", "--out", str(out), "--quiet", "--python-tokenizer"]) == 130
    assert list(tmp_path.iterdir()) == []


def test_bad_engine_and_missing_workbook(tmp_path):
    code, _, err = run("recalc", str(tmp_path / "none.xlsx"))
    assert "not found" in one_line_error(code, err) or "no such" in err
    code, _, err = run("recalc", "x.xlsx", "--engine", "excel")
    assert code == 2  # argparse's own usage error


def test_tokenize_command():
    code, stdout, _ = run("tokenize", "Mike is quick. He moves", "--model", "tiny:merges=50000,embd=4,layers=1,heads=1")
    assert code == 0
    assert json.loads(stdout.splitlines()[0]) == [16073, 318, 2068, 13, 679, 6100]
