"""The logit lens and the attention tab, recalculated by every engine, equal an independent NumPy computation."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ENGINES
from inside import engine_book, formulas_book, reference, rel_err, shared_book
from xlgpt.build import as_written
from xlgpt.stages import build_book, prompt_ids
from xlgpt.stages.data import vocab_texts
from xlgpt.stages.lens import LN_CONVENTION

LENS_ENGINES = [*ENGINES, "formulas"]


def open_engine(engine):
    if engine == "formulas":
        return formulas_book()
    return (engine_book(engine), *shared_book())


def independent_lens(model, opts, target=None, k=10):
    """The logit lens written out again from its definition (not via reference.logit_lens)."""
    t = reference(model, opts)
    n = len(prompt_ids(model, opts))
    L = model.config.n_layer
    xs = np.stack([t[f"block_{i}_resid_pre"][n - 1] for i in range(L)] + [t[f"block_{L - 1}_resid_post"][n - 1]])
    mean = xs.mean(axis=1, keepdims=True)
    var = ((xs - mean) ** 2).mean(axis=1, keepdims=True)
    ln = (xs - mean) / np.sqrt(var + 1e-5) * as_written(model.params["ln_f_w"]) + as_written(model.params["ln_f_b"])
    logits = ln @ as_written(model.params["wte"]).T  # [L+1, V]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    V = logits.shape[1]
    ids = np.array([sorted(range(V), key=lambda v: (-row[v], v))[:k] for row in logits]).T  # [k, L+1]
    target = int(np.argmax(logits[-1])) if target is None else target
    rank = 1 + (logits > logits[:, target : target + 1]).sum(axis=1)
    return {"ids": ids, "probs": np.take_along_axis(probs.T, ids, axis=0), "rank": rank, "prob": probs[:, target],
            "logits": logits, "target": target, "next": int(np.argmax(t["lm_head_logits"]))}


@pytest.mark.parametrize("engine", LENS_ENGINES)
def test_lens_equals_reference(engine):
    wb, path, model, opts = open_engine(engine)
    want = independent_lens(model, opts, k=opts.top_k)
    L = model.config.n_layer
    ids = wb.numbers("lens_top_ids")
    assert ids.shape == (opts.top_k, L + 1)
    assert np.array_equal(ids, want["ids"]), (ids, want["ids"])
    assert rel_err(wb.numbers("lens_top_probs"), want["probs"]) < 1e-12
    assert rel_err(wb.numbers("lens_logits"), want["logits"].T) < 1e-12
    assert int(wb.numbers("lens_target")[0, 0]) == want["target"] == want["next"]
    assert np.array_equal(wb.numbers("lens_target_rank").ravel(), want["rank"])
    assert wb.numbers("lens_target_rank")[0, -1] == 1  # the prediction is the final layer's top token
    assert rel_err(wb.numbers("lens_target_prob").ravel(), want["prob"]) < 1e-12
    texts = vocab_texts(model.tokenizer)
    got_text = wb.read("lens_top_tokens")
    assert [[str(v) for v in row] for row in got_text] == [[texts[int(i)] for i in row] for row in want["ids"]]
    # the final column is the prediction tab's top-k
    assert np.array_equal(ids[:, -1], wb.numbers("top_ids").ravel())
    assert rel_err(wb.numbers("lens_top_probs")[:, -1], wb.numbers("top_probs").ravel()) < 1e-12
    if engine == "formulas":
        return  # a read-only session
    # the target cell holds =next_token_id; typing an id over it follows that token through the layers
    target = 42
    want = independent_lens(model, opts, target=target, k=opts.top_k)
    wb.set("lens_target", target)
    wb.session.recalc()
    assert np.array_equal(wb.numbers("lens_target_rank").ravel(), want["rank"])
    assert rel_err(wb.numbers("lens_target_prob").ravel(), want["prob"]) < 1e-12
    assert np.array_equal(wb.numbers("lens_top_ids"), want["ids"])  # the top-k does not depend on it


def test_lens_layout():
    """One MMULT for every layer's logits, the LayerNorm convention stated, the target a formula by default."""
    _, model, opts = shared_book()
    book = build_book(model, opts)
    L, V = model.config.n_layer, model.config.vocab_size
    logits = book.names["lens_logits"]
    assert logits.shape == (V, L + 1)
    ws = book.sheet("logit_lens")
    mmults = [a for a in ws.arrays if "MMULT(wte" in a.text]
    assert len(mmults) == 1 and mmults[0].rng == logits and mmults[0].text == "=MMULT(wte,TRANSPOSE(lens_ln))"
    assert any(v == LN_CONVENTION for v, _ in ws.cells.values())
    assert "OWN mean and variance" in LN_CONVENTION
    t = book.names["lens_target"]
    assert ws.cells[(t.r1, t.c1)][0].text == "=next_token_id"
    # the rows read block_l_resid_pre (after steering) and the last block's resid_post
    sources = [a.text for a in ws.arrays if a.rng.sheet == "logit_lens" and "TRANSPOSE(IF(positions" in a.text]
    assert [s.rsplit(",", 1)[1].rstrip(")") for s in sources] == [f"block_{i}_resid_pre" for i in range(L)] + [
        f"block_{L - 1}_resid_post"]


def test_reference_lens_keys_match_workbook_names():
    """verify compares every lens name: the reference returns them under the workbook's names and shapes."""
    path, model, opts = shared_book()
    book = build_book(model, opts)
    t = reference(model, opts, lens_k=opts.top_k)
    for name in ("lens_x", "lens_ln", "lens_logits", "lens_probs", "lens_top_ids", "lens_top_probs", "lens_max",
                 "lens_sum", "lens_target_rank", "lens_target_prob", "lens_target_logit"):
        assert name in t and name in book.names, name
        assert np.shape(t[name]) == book.names[name].shape, name


def test_attention_maps():
    path, model, opts = shared_book()
    book = build_book(model, opts)
    ws = book.sheet("attention")
    L, H, N = model.config.n_layer, model.config.n_head, opts.context
    maps = {a.text: a.rng for a in ws.arrays}
    assert len(maps) == L * H and len(ws.color_scales) == L * H
    for i in range(L):
        for h in range(H):
            rng = maps[f"=block_{i}_attn_h{h}"]
            assert rng.shape == (N, N) and book.names[f"attention_{i}_h{h}"] == rng
            # the title above and the token labels left and above
            assert ws.cells[(rng.r1 - 2, rng.c1)][0] == f"block {i}, head {h}"
            assert ws.cells[(rng.r1 - 1, rng.c1)][0].text.endswith(f"$B${book.names['tokens_text'].r1}")
            assert ws.cells[(rng.r1, rng.c1 - 1)][0].text.endswith(f"$B${book.names['tokens_text'].r1}")
    t = reference(model, opts)
    wb = engine_book("ironcalc")
    for i in range(L):
        for h in range(H):
            got = wb.numbers(f"attention_{i}_h{h}")
            assert rel_err(got, t[f"block_{i}_attn_h{h}"]) < 1e-12
            assert np.allclose(got.sum(axis=1), 1) and np.all(np.triu(got, 1) == 0)
