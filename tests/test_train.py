"""The toy model: its training script is deterministic, and the shipped weights do what the docs say."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from xlgpt import train
from xlgpt.model import hf_key, load_model, param_shapes
from xlgpt.reference import gpt2

TOY = train.TOY_DIR
DOC = Path(__file__).resolve().parents[1] / "docs" / "toy-model.md"
CONTEXT = 16  # the workbook's default context


@pytest.fixture(scope="module")
def toy():
    return load_model("toy")


# ---- the corpus -----------------------------------------------------------------------------------------
def test_corpus_is_deterministic_given_its_seed():
    a = train.corpus(3, 400)
    assert a == train.corpus(3, 400)
    assert a != train.corpus(4, 400)
    assert train.corpus(3, 100) == a[:100]


def test_corpus_is_varied():
    text = train.corpus(0, 2000)
    assert len(set(text)) > 1000
    joined = "\n".join(text)
    for word in ("tomorrow", "yesterday", "month", "three", "She", "He", "quickly", "because", "Jedi", "lightsaber",
                 "phone"):
        assert word in joined
    assert sum(name in joined for name in train.HE + train.SHE) >= 30
    assert sum(adv in joined for adv in train.ADVERBS.values()) >= 25


# ---- a short training run ------------------------------------------------------------------------------
TINY = dict(n_layer=1, n_head=2, n_embd=16, n_ctx=16, steps=3, batch=4, warmup=1, corpus_size=200)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("train")
    quiet = lambda *a, **k: None  # noqa: E731
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        train.train(root / name, train.TrainConfig(seed=seed, **TINY), log=quiet)
    return root


def test_short_training_is_deterministic(tiny_runs):
    a, b, c = (tiny_runs / n for n in "abc")
    for f in ("model.safetensors", "config.json", "vocab.json", "merges.txt"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_short_training_writes_a_folder_load_model_reads(tiny_runs):
    model = load_model(str(tiny_runs / "a"))
    cfg = model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx) == (1, 2, 16, 16)
    merges = train.toy_tokenizer(train.corpus(5, 200)).merges  # the closure of its own corpus
    assert model.tokenizer.merges == merges and cfg.vocab_size == 256 + len(merges) + 1 == model.tokenizer.eot_id + 1
    hf = json.loads((tiny_runs / "a" / "config.json").read_text())
    assert hf["model_type"] == "gpt2" and hf["activation_function"] == "gelu_new" and hf["tie_word_embeddings"]
    from safetensors import safe_open

    with safe_open(str(tiny_runs / "a" / "model.safetensors"), framework="np") as f:
        assert set(f.keys()) == {hf_key(n) for n in param_shapes(cfg)}
        assert all(f.get_tensor(k).dtype == np.float32 for k in f.keys())
    t = gpt2(model.tokenizer.encode("Mike is quick."), model.params, cfg)
    assert np.all(np.isfinite(t["prediction_probs"])) and abs(t["prediction_probs"].sum() - 1) < 1e-9


# ---- the shipped model -----------------------------------------------------------------------------------
def test_probes_are_whole_tokens_and_fit_the_context(toy):
    tok = toy.tokenizer
    for prompt, answer in train.PROBES:
        (answer_id,) = tok.encode(answer)  # the whole word is one token, as in GPT-2
        assert tok.encode(prompt + answer) == tok.encode(prompt) + [answer_id], prompt
        assert len(tok.encode(prompt)) + 1 <= CONTEXT, prompt
    days = {p: a for p, a in train.PROBES if p.startswith("If today is") and p.endswith("tomorrow is")}
    assert len(days) == 7 and days["If today is Tuesday, tomorrow is"] == " Wednesday"


@pytest.mark.parametrize("bos", [False, True])
def test_shipped_model_predicts_every_probe(toy, bos):
    for prompt, answer in train.PROBES:
        probs, _ = train.predict(toy, prompt, bos=bos)
        order = np.argsort(-probs, kind="stable")
        assert toy.tokenizer.token_text(int(order[0])) == answer, (prompt, toy.tokenizer.token_text(int(order[0])))
        assert probs[order[0]] > 0.5 and probs[order[0]] > 10 * probs[order[1]], (prompt, probs[order[:2]])


def test_shipped_model_logit_lens_answer_emerges_late(toy):
    assert train.PROBES[0] == ("If today is Tuesday, tomorrow is", " Wednesday")
    ranks = [row["rank"] for row in train.logit_lens(toy, *train.PROBES[0])]
    assert len(ranks) == toy.config.n_layer + 1
    middle = toy.config.n_layer // 2  # rank 1 only after the middle blocks: not before entering the last ones
    assert all(r > 1 for r in ranks[: middle + 1]) and ranks[-1] == 1, ranks


def test_shipped_model_steering_turns_phone_into_lightsaber(toy):
    s = train.steered(toy)
    assert s["base"] == " phone" and s["top"] == " lightsaber" and s["top_prob"] > 0.5, s


def test_shipped_model_is_small_and_gpt2_shaped(toy):
    cfg = toy.config
    assert cfg.n_layer >= 3 and cfg.n_embd <= 64 and cfg.vocab_size <= 1500 and cfg.n_ctx >= CONTEXT
    assert cfg.vocab_size == 256 + len(toy.tokenizer.merges) + 1 == toy.tokenizer.eot_id + 1
    assert sum((TOY / f).stat().st_size for f in ("config.json", "model.safetensors", "vocab.json", "merges.txt")) < 1_000_000
    hf = json.loads((TOY / "config.json").read_text())
    assert hf["activation_function"] == "gelu_new" and hf["layer_norm_epsilon"] == 1e-5 and hf["tie_word_embeddings"]


def test_docs_state_the_shipped_sha256():
    digest = hashlib.sha256((TOY / "model.safetensors").read_bytes()).hexdigest()
    assert digest in DOC.read_text(encoding="utf-8")


def test_shipped_model_matches_transformers(toy):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(TOY)).eval()
    for prompt, _ in train.PROBES:
        ids = toy.tokenizer.encode(prompt)
        with torch.no_grad():
            theirs = hf(torch.tensor([ids])).logits[0, -1].double().numpy()
        ours = gpt2(ids, toy.params, toy.config)["lm_head_logits"][:, 0]
        assert np.max(np.abs(theirs - ours)) < 1e-4, prompt
