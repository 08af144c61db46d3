"""Build the workbook in pipeline order, one function per stage (mirroring reference.gpt2)."""
from __future__ import annotations

from ..errors import XlgptError
from ..layout import Layout
from ..model import Model
from ..xlsx.book import Book
from .attention import attention_tab
from .block import transformer_block
from .data import vocab_tab, vocab_texts
from .embeddings import embeddings
from .head import final_norm, lm_head, prediction
from .lens import logit_lens
from .options import BuildOptions, Steering
from .params import parameter_tabs
from .sampling import sampling
from .start import start_tab
from .steer import steer_tab
from .tokens import prompt_tab, status_cell, tokens_from_python

__all__ = ["BuildOptions", "Steering", "build_book", "make_layout"]


def make_layout(model: Model, opts: BuildOptions) -> Layout:
    if not 1 <= opts.context <= model.config.n_ctx:
        raise XlgptError(f"--context must be between 1 and the model's n_ctx ({model.config.n_ctx}), not {opts.context}")
    return Layout(model.config, opts.context, max_chars=opts.max_chars or 8 * opts.context,
                  max_word_bytes=opts.max_word_bytes, top_k=min(opts.top_k, model.config.vocab_size),
                  live_tokenizer=opts.live_tokenizer)


def build_book(model: Model, opts: BuildOptions) -> Book:
    lay = make_layout(model, opts)
    tok = model.tokenizer
    ids = prompt_ids(model, opts)
    book = Book()
    texts = vocab_texts(tok)

    ptab = prompt_tab(book, lay, opts)
    if opts.live_tokenizer:
        from .tokenizer import live_tokenizer

        token_text = live_tokenizer(book, lay, tok, ptab, opts.prompt, opts.bos)
    else:
        status_cell(ptab, None)
        tokens_from_python(book, lay, ids, tok, texts)
        token_text = lambda ref: f"INDEX(vocab_text,{ref}+1)"  # noqa: E731
    embeddings(book, lay)
    x = book["embeddings_out"]
    for i in range(lay.L):
        x = transformer_block(book, lay, i, x)
    final_norm(book, lay, x)
    lm_head(book, lay, texts)
    ptab = prediction(book, lay, token_text)
    sampling(book, lay, ptab, opts, token_text)
    logit_lens(book, lay, token_text, texts)
    attention_tab(book, lay)
    steer_tab(book, lay, opts.steer)
    parameter_tabs(book, lay, model, texts)
    vocab_tab(book, lay, tok, texts)
    order = lay.stage_sheets() + lay.param_sheets() + lay.data_sheets()
    start_tab(book, lay, model.name, [s for s in order if any(sh.name == s for sh in book.sheets)])
    book.reorder(order)
    book.active = 0  # the start tab
    return book


def prompt_ids(model: Model, opts: BuildOptions) -> list[int]:
    """The prompt's token ids per the Python tokenizer; too long for the context is an error."""
    tok = model.tokenizer
    ids = tok.encode(opts.prompt)
    if opts.bos:
        if tok.eot_id is None:
            raise XlgptError("--bos needs a tokenizer with <|endoftext|>")
        ids = [tok.eot_id] + ids
    if not ids:
        raise XlgptError("the prompt is empty: give --prompt some text (or --bos)")
    if len(ids) > model.config.n_ctx:
        raise XlgptError(f"the prompt is {len(ids)} tokens but {model.name} reads at most {model.config.n_ctx} "
                         "(its n_ctx): shorten it")
    if len(ids) > opts.context:
        raise XlgptError(f"the prompt is {len(ids)} tokens but the context is {opts.context}: "
                         f"shorten it or pass --context {len(ids)}")
    return ids
