"""The Python tokenizer (the reference for the in-sheet one) against tiktoken, built offline from GPT-2's files."""
from __future__ import annotations

import pytest

from xlgpt.tokenizer import BYTE_CHAR, GPT2_PATTERN, Tokenizer, gpt2_files_dir

tiktoken = pytest.importorskip("tiktoken")
import tiktoken.load  # noqa: E402  (a submodule importorskip does not load)

TEXTS = [
    "Mike is quick. He moves", "If today is Tuesday, tomorrow is", "Mike pulls out his", "funology", "reinjury",
    "don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "DON'T", "I'LL", "WE'VE", "It'S", "''s", "!'s", "x's",
    "0", "42", "3.14159", "1,000,000", "2024-11-26", "Ⅻ½", "١٢٣",
    "!!!", "?!?!", "...", "---", "(a)", "[x]{y}", "#hashtag", "@user", "=SUM(A1:A2)", "+1", "-1", "a+b=c",
    "a  b", "a   b", "   lead", "trail   ", " ", "  ", "\n", "\n\n", "a\nb", "a\n\nb", "a \n b", "\tx", "a\t\tb",
    "line1\r\nline2", "end\n", "x\u00a0y", "x\u3000y",
    "café", "naïve", "Ångström", "Straße", "ŁÓDŹ", "Ελληνικά", "Москва", "日本語のテキスト", "中文字符", "한국어",
    "😀", "👍🏽", "🇫🇷", "e\u0301", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a😀b", " 🎉🎉", "ﬁ", "\u200b",
    "The quick brown fox jumps over the lazy dog.", "Supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis", "x" * 64, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Hello,world!How are you?", "<|endoftext|>", "mixed CASE words Here", "tab\tand space  mix \t end",
]


@pytest.fixture(scope="module")
def gpt2_pair():
    d = gpt2_files_dir()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=str(d / "vocab.bpe"),
                                                         encoder_json_file=str(d / "encoder.json"))
    enc = tiktoken.Encoding(name="gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})
    return Tokenizer.gpt2(), enc


def cut_encoding(tok: Tokenizer):
    ranks = {tok.token_bytes(i): i for i in range(tok.vocab_size) if i != tok.eot_id}
    return tiktoken.Encoding(name=f"cut{tok.vocab_size}", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": tok.eot_id})


@pytest.mark.parametrize("text", TEXTS)
def test_encode_equals_tiktoken(gpt2_pair, text):
    ours, enc = gpt2_pair
    assert ours.encode(text) == enc.encode_ordinary(text)


@pytest.mark.parametrize("k", [0, 10, 64, 1000])
def test_cut_vocabulary_equals_tiktoken(k):
    tok = Tokenizer.gpt2().cut(k)
    enc = cut_encoding(tok)
    for text in TEXTS:
        assert tok.encode(text) == enc.encode_ordinary(text), text


def test_known_token_ids(gpt2_pair):
    ours, _ = gpt2_pair
    assert ours.encode("Mike is quick. He moves") == [16073, 318, 2068, 13, 679, 6100]
    assert ours.encode("If today is Tuesday, tomorrow is") == [1532, 1909, 318, 3431, 11, 9439, 318]
    assert [ours.token_text(i) for i in ours.encode("funology")] == ["fun", "ology"]
    assert [ours.token_text(i) for i in ours.encode("reinjury")] == ["re", "in", "jury"]
    assert ours.encode(" Wednesday") == [3583] and ours.encode(" lightsaber") == [45282]


def test_vocabulary_layout(gpt2_pair):
    ours, enc = gpt2_pair
    assert ours.vocab_size == 50257 and ours.eot_id == 50256
    assert ours.merge_ids == [256 + r for r in range(50000)]  # merge rank r makes token 256 + r
    assert sorted(ours.byte_ids) == list(range(256))
    assert all(enc.decode_single_token_bytes(i) == ours.token_bytes(i) for i in range(0, 50256, 97))
    assert len(BYTE_CHAR) == 256


def test_decode_round_trip_and_partial_characters(gpt2_pair):
    ours, enc = gpt2_pair
    for text in TEXTS:
        assert ours.decode(ours.encode(text)) == text
    partial = [i for i in range(256) if ours.token_bytes(i)[0] >= 0x80][:5]
    for i in partial:
        assert ours.token_text(i) == "\ufffd" == enc.decode([i])


def test_cut_keeps_ids_and_adds_eot():
    tok = Tokenizer.gpt2().cut(300)
    assert tok.vocab_size == 557 and tok.eot_id == 556
    full = Tokenizer.gpt2()
    assert all(tok.decoder[i] == full.decoder[i] for i in range(556))
