"""The toy's tokenizer: GPT-2's own merges that its corpus and the talk's words need, giving GPT-2's pieces."""
from __future__ import annotations

import pytest

from test_tokenizer import TEXTS, cut_encoding, gpt2_pair  # noqa: F401  (gpt2_pair is a fixture)
from xlgpt import train
from xlgpt.model import load_model
from xlgpt.tokenizer import EOT

TALK = {  # the talk's prompts and words, as GPT-2 splits them
    "Mike is quick. He moves": ["Mike", " is", " quick", ".", " He", " moves"],
    "If today is Tuesday, tomorrow is": ["If", " today", " is", " Tuesday", ",", " tomorrow", " is"],
    "Mike pulls out his": ["Mike", " pulls", " out", " his"],
    "funology": ["fun", "ology"],
    "reinjury": ["re", "in", "jury"],
    " Jedi": [" Jedi"], " lightsaber": [" lightsaber"], " phone": [" phone"], " quickly": [" quickly"],
    " Wednesday": [" Wednesday"],
}


@pytest.fixture(scope="module")
def toy():
    return load_model("toy").tokenizer


@pytest.fixture(scope="module")
def corpus():
    """The shipped model's training corpus."""
    return train.corpus(train.TrainConfig().seed, train.TrainConfig().corpus_size)


@pytest.fixture(scope="module")
def words(toy, corpus):
    """Every pre-token of the training corpus, of held-out passages, of the probes and of the demo texts."""
    texts = corpus + train.corpus(99, 2000) + [p + a for p, a in train.PROBES] + train.DEMO_TEXTS + ["\n"]
    return sorted({w for t in texts for w in toy.pretokenize(t)})


def test_the_talks_pieces(toy):
    for text, pieces in TALK.items():
        assert [toy.token_text(i) for i in toy.encode(text)] == pieces, text


def test_same_pieces_as_gpt2_on_every_word(toy, words, gpt2_pair):
    _, gpt2 = gpt2_pair
    assert len(words) > 150
    for w in words:
        ours = [toy.token_bytes(i) for i in toy.encode(w)]
        assert ours == [gpt2.decode_single_token_bytes(i) for i in gpt2.encode_ordinary(w)], w


def test_tiktoken_from_the_toys_files_equals_the_python_tokenizer(toy, words):
    enc = cut_encoding(toy)
    for text in [*words, *TEXTS, "\n".join(train.corpus(5, 200))]:
        assert toy.encode(text) == enc.encode_ordinary(text), text


def test_gpt2s_merges_in_gpt2s_order_and_the_toys_ids(toy, gpt2_pair):
    full, _ = gpt2_pair
    ranks = [full.merges.index(m) for m in toy.merges]
    assert ranks == sorted(set(ranks))  # GPT-2's own merges, each once, in GPT-2's rank order
    assert all(toy.encoder[s] == full.encoder[s] for s in toy.encoder if toy.encoder[s] < 256)  # the byte tokens
    assert toy.merge_ids == [256 + j for j in range(len(toy.merges))]
    assert toy.eot_id == toy.vocab_size - 1 == 256 + len(toy.merges) and toy.decoder[toy.eot_id] == EOT
    assert toy.vocab_size <= 1500


def test_the_shipped_files_are_the_closure_of_the_corpus(toy, corpus):
    again = train.toy_tokenizer(["\n".join(corpus)])
    assert again.merges == toy.merges and again.encoder == toy.encoder
    # nothing to spare: the toy itself applies every one of its merges to those texts
    assert toy.closure(["\n".join(corpus), *train.DEMO_TEXTS]).merges == toy.merges
