"""`generate`: the workbook writes text itself, token by token, and agrees with NumPy's greedy continuation."""
from __future__ import annotations

import pytest

from conftest import needs_gnumeric
from xlgpt.errors import XlgptError
from xlgpt.generate import generate
from xlgpt.model import load_model
from xlgpt.reference import gpt2
from xlgpt.stages import BuildOptions, build_book, prompt_ids
from xlgpt.xlsx.book import Book
from xlgpt.xlsx.reader import read_names
from xlgpt.xlsx.writer import write_book

CONTEXT = 10


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


@pytest.fixture(scope="module")
def books(model, tmp_path_factory):
    """One workbook per tokenizer mode, built once."""
    d = tmp_path_factory.mktemp("gen")
    return {live: (d / f"g{int(live)}.xlsx", build(model, d / f"g{int(live)}.xlsx", live)) for live in (False, True)}


def build(model, path, live: bool):
    opts = BuildOptions(prompt="Hi there", context=CONTEXT, live_tokenizer=live)
    write_book(build_book(model, opts), path)
    return prompt_ids(model, opts)


def greedy(model, path, ids: list[int], k: int) -> list[int]:
    """NumPy's continuation, from the weights exactly as written in the workbook."""
    params = {n: a.reshape(model.params.shapes[n]) for n, a in read_names(path, list(model.params)).items()}
    ids, out = list(ids), []
    pad = model.tokenizer.eot_id
    for _ in range(k):
        r = gpt2(ids + [pad] * (CONTEXT - len(ids)), params, model.config, n_real=len(ids))
        out.append(int(r["next_token_id"][0, 0]))
        ids.append(out[-1])
    return out


@pytest.mark.parametrize("engine", ["ironcalc", pytest.param("gnumeric", marks=needs_gnumeric)])
@pytest.mark.parametrize("live", [False, True], ids=["python-tokens", "live-tokenizer"])
def test_generate_equals_numpy(model, books, live, engine):
    path, ids = books[live]
    texts = []
    got = generate(path, 4, engine=engine, echo=texts.append)
    assert list(got) == greedy(model, path, ids, 4)
    assert len(got.token_seconds) == 4 and got.seconds_per_token > 0
    expect = model.tokenizer.decode(ids + list(got))
    assert "".join(texts).replace("\ufffd", "") == expect.replace("\ufffd", "")


def test_context_full_and_sampling(books):
    path, ids = books[False]
    free = CONTEXT - len(ids)
    with pytest.raises(XlgptError, match="context is full"):
        generate(path, free + 1, echo=lambda s: None)
    a = generate(path, 2, temperature=0.9, top_k=5, seed=3, echo=lambda s: None)
    b = generate(path, 2, temperature=0.9, top_k=5, seed=3, echo=lambda s: None)
    assert list(a) == list(b)
    assert list(generate(path, 0, echo=lambda s: None)) == []


@needs_gnumeric
def test_gnumeric_samples_as_ironcalc(books):
    path, _ = books[True]
    runs = [generate(path, 2, engine=e, temperature=0.9, top_k=5, seed=3, echo=lambda s: None)
            for e in ("ironcalc", "gnumeric")]
    assert list(runs[0]) == list(runs[1])


def test_not_a_gpt2_workbook(tmp_path):
    path = tmp_path / "x.xlsx"
    b = Book()
    b.sheet("s").write(1, 1, 1)
    write_book(b, path)
    with pytest.raises(XlgptError, match="not an xlgpt GPT-2 workbook"):
        generate(path, 1, echo=lambda s: None)
