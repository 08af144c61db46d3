"""Build the workbook in pipeline order, one function per stage (mirroring reference.gpt2)."""
from __future__ import annotations

from ..contract import T
from ..errors import XlgptError
from ..reference import gpt2, steer_add
from ..reference import sampling as sampling_reference
from ..layout import Layout
from ..model import SMALL_MODEL, Model
from ..xlsx.book import Book
from .attention import attention_tab
from .block import transformer_block
from .data import vocab_tab, vocab_texts
from .embeddings import embeddings
from .head import final_norm, lm_head, prediction
from .lens import logit_lens
from .options import BuildOptions, Steering
from .params import parameter_tabs
from .start import start_tab
from .steer import steer_tab
from .tokens import prompt_tab, status_cell, tokens_from_python

__all__ = ["BuildOptions", "Steering", "build_book", "forward", "make_layout"]


def make_layout(model: Model, opts: BuildOptions) -> Layout:
    if not 1 <= opts.context <= model.config.n_ctx:
        raise XlgptError(f"--context must be between 1 and the model's n_ctx ({model.config.n_ctx}), not {opts.context}")
    return Layout(model.config, opts.context, max_chars=opts.max_chars or 8 * opts.context,
                  max_word_bytes=opts.max_word_bytes, top_k=min(opts.top_k, model.config.vocab_size),
                  live_tokenizer=opts.live_tokenizer)


def build_book(model: Model, opts: BuildOptions, t: dict | None = None) -> Book:
    """The whole workbook, every formula with the value it must compute (t: forward(), if already run)."""
    lay = make_layout(model, opts)
    tok = model.tokenizer
    ids = prompt_ids(model, opts)
    t = forward(model, opts, ids) if t is None else t
    book = Book()
    texts = vocab_texts(tok)

    token_text = tokenize(book, lay, tok, prompt_tab(book, lay, opts), opts, ids, texts)
    embeddings(book, lay, t)
    x = book[T.embeddings_out()]
    for i in range(lay.L):
        x = transformer_block(book, lay, t, i, x)
    final_norm(book, lay, t, x)
    lm_head(book, lay, t, texts)
    prediction(book, lay, t, token_text, opts)
    logit_lens(book, lay, t, token_text, texts, typed_target=opts.lens_target is not None)
    attention_tab(book, lay, t)
    steer_tab(book, lay, t, opts.steer)
    parameter_tabs(book, lay, model, texts)
    vocab_tab(book, lay, tok, texts)
    order = lay.stage_sheets() + lay.param_sheets() + lay.data_sheets()
    start_tab(book, lay, model.name, [s for s in order if any(sh.name == s for sh in book.sheets)], model.source)
    book.reorder(order)
    book.active = 0  # the start tab
    book.manual_calc = model.config.n_params >= SMALL_MODEL  # opens at once with its cached answer; F9 recalculates
    return book


def tokenize(book, lay: Layout, tok, ptab, opts: BuildOptions, ids: list[int], texts: list[str]):
    """The tokens tab (and, in the sheet, the tabs before it); returns how later tabs show a token id as text.

    The two modes have one interface: the in-sheet tokenizer (chars -> pretokens -> bpe -> tokens, which also
    decodes ids in formulas) or Python's ids typed in as inputs (texts looked up on the vocab tab)."""
    if opts.live_tokenizer:
        from .tokenizer import live_tokenizer

        return live_tokenizer(book, lay, tok, ptab, opts.prompt, opts.bos)
    status_cell(ptab, None)
    tokens_from_python(book, lay, ids, tok, texts)
    return VocabText(texts)


class VocabText:
    """A token's text by lookup in the vocab tab (the Python-tokenizer workbook has no decoding tabs)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def __call__(self, ref: str) -> str:
        return f"INDEX({T.vocab_text()},{ref}+1)"

    def text(self, i: int) -> str:
        return self.texts[i]


def forward(model: Model, opts: BuildOptions, ids: list[int]) -> dict:
    """The NumPy reference over the workbook's rows (padded to the context), with the workbook's steering,
    lens target and sampler: every value a formula of the workbook computes."""
    lay = make_layout(model, opts)
    pad = model.tokenizer.eot_id if model.tokenizer.eot_id is not None else 0
    padded = list(ids) + [pad] * (lay.N - len(ids))
    s = opts.steer
    steer = None
    if s.on and s.vector is not None:
        steer = (s.layer, steer_add(lay.N, lay.C, True, s.coef, s.vector, s.positions)[1])
    t = gpt2(padded, model.params, model.config, n_real=len(ids), steer=steer, lens_target=opts.lens_target,
             lens_k=lay.top_k)
    u = opts.seed if opts.seed is not None else opts.draw
    t.update(sampling_reference(t[T.lm_head_logits()], opts.temperature, opts.sample_top_k, u))
    return t


def encode(model: Model, text: str, bos: bool, what: str = "the prompt") -> list[int]:
    """A text's token ids for this model (BOS first if asked): refused when empty or past the model's n_ctx."""
    tok = model.tokenizer
    ids = tok.encode(text)
    if bos:
        if tok.eot_id is None:
            raise XlgptError("--bos needs a tokenizer with <|endoftext|>")
        ids = [tok.eot_id] + ids
    if not ids:
        raise XlgptError(f"{what} is empty: give it some text (or --bos)")
    if len(ids) > model.config.n_ctx:
        raise XlgptError(f"{what} is {len(ids)} tokens but {model.name} reads at most {model.config.n_ctx} "
                         "(its n_ctx): shorten it")
    return ids


def prompt_ids(model: Model, opts: BuildOptions) -> list[int]:
    """The prompt's token ids per the Python tokenizer (or those typed in); too long for the context is an error."""
    if opts.token_ids is not None and not opts.live_tokenizer:
        return list(opts.token_ids)
    ids = encode(model, opts.prompt, opts.bos)
    if len(ids) > opts.context:
        raise XlgptError(f"the prompt is {len(ids)} tokens but the context is {opts.context}: "
                         f"shorten it or pass --context {len(ids)}")
    return ids
