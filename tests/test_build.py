"""The build's output file and defaults: a symlink is written through, an existing file keeps its mode, the
default context fits the model, the default prompt limits fit the prompt, and the size estimate refuses
what cannot be held before anything is allocated."""
from __future__ import annotations

import os

import pytest

from xlgpt.build import build, check_fits, estimate
from xlgpt.errors import XlgptError
from xlgpt.model import GPT2Config, load_model
from xlgpt.stages import BuildOptions
from xlgpt.stages.options import check_build


def _build(out, spec="tiny", **kw):
    opts = BuildOptions(prompt=kw.pop("prompt", "one two"), fit_context=kw.pop("fit_context", True), **kw)
    return build(spec, opts, out, echo=None)


def test_symlink_is_written_through_and_mode_kept(tmp_path):
    target = tmp_path / "real.xlsx"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.xlsx"
    link.symlink_to(target)
    _build(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:2] == b"PK" and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.xlsx", "real.xlsx"]


def test_new_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        _build(tmp_path / "new.xlsx")
    finally:
        os.umask(old)
    assert (tmp_path / "new.xlsx").stat().st_mode & 0o777 == 0o640


def test_default_context_fits_the_model(tmp_path):
    r = _build(tmp_path / "c.xlsx", "tiny:ctx=8", prompt="hi")
    assert r.model.config.n_ctx == 8 and len(r.ids) <= 8


def test_default_max_chars_grows_to_fit_the_prompt():
    prompt = "x" * 200  # more characters than 8 x the context
    opts = BuildOptions(prompt=prompt, context=4)
    check_build(opts, n_ctx=8, n_embd=16, pretokens=[prompt[:100], prompt[100:]])
    assert opts.max_chars == 200
    given = BuildOptions(prompt=prompt, context=4, max_chars=100)
    with pytest.raises(XlgptError, match="--max-chars 200"):
        check_build(given, n_ctx=8, n_embd=16, pretokens=[prompt[:100], prompt[100:]])


def test_estimate_counts_by_arithmetic():
    cfg = GPT2Config(n_layer=10 ** 9, n_head=1, n_embd=16, n_ctx=8, vocab_size=100)
    est = estimate(cfg)  # instant: nothing is enumerated
    assert est.weights == cfg.n_params > 10 ** 12
    with pytest.raises(XlgptError, match="weight cells"):
        check_fits(cfg, __import__("pathlib").Path("."))
    toy = load_model("toy").config
    assert toy.n_params == sum(a.size for a in load_model("toy").params.values())


def test_wide_embedding_is_refused_with_the_estimate():
    cfg = GPT2Config(n_layer=1, n_head=4, n_embd=8192, n_ctx=8, vocab_size=100)
    with pytest.raises(XlgptError, match=r"n_embd 8192 needs 32,770 columns .* grid has 16,384"):
        check_fits(cfg, __import__("pathlib").Path("."))
