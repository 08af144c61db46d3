"""Where everything goes: sheet names in pipeline order, the grid of each stage tab, and defined names.

Every stage tab looks the same: A1 links back to the start tab; a title row, a one-line summary and a few rows
saying what happens, the shapes and one worked formula (all from templates/tabs.toml); then sections stacked
downwards. A section has a title row (a coloured band), a row showing its formula, a row of column labels, and
one row per token (column A the position, column B the token text), its numbers starting at column C. Columns
A:B and the title rows are frozen so the token labels stay in view. Tab colours group the tabs (TAB_COLORS).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from .model import GPT2Config
from .xlsx.book import Book, Range, Same, Sheet, Style

# ---- sheet names, in tab order ----------------------------------------------------------------------
START, PROMPT, CHARS, PRETOKENS, BPE, TOKENS, EMBEDDINGS = "start", "prompt", "chars", "pretokens", "bpe", "tokens", "embeddings"
LN_F, LM_HEAD, PREDICTION = "ln_f", "lm_head", "prediction"
LENS, ATTENTION, STEER = "logit_lens", "attention", "steer"
VOCAB, MERGES, UNICODE_TAB, BYTES = "vocab", "merges", "unicode", "bytes"
WTE, WPE, LN_F_PARAMS = "wte", "wpe", "ln_f_params"


def block_sheet(i: int) -> str:
    return f"block_{i}"


def params_sheet(i: int) -> str:
    return f"h{i}"


# ---- styles --------------------------------------------------------------------------------------
class S:
    """The workbook's named styles."""

    TITLE = Style(bold=True, size=14, color="1F3864")
    SUBTITLE = Style(italic=True, color="404040")
    TEXT = Style()
    NOTE = Style(italic=True, color="7F7F7F")
    SECTION = Style(bold=True, fill="DDEBF7", color="1F3864")
    FORMULA = Style(font="Consolas", color="375623", size=10, valign="center")  # centred: underscores stay clear of the grid
    INDEX = Style(color="808080", size=9, halign="center")
    POS = Style(color="808080", size=9)
    LABEL = Style(bold=True, color="1F3864")
    NUM = Style(num_fmt="0.0000")
    PROB = Style(num_fmt="0.00%")
    INT = Style(num_fmt="0")
    INPUT = Style(fill="FFF2CC", border=True, bold=True)
    TEXT_INPUT = Style(fill="FFF2CC", border=True, bold=True, wrap=True, valign="top")
    ERROR = Style(bold=True, color="C00000")
    BIG = Style(bold=True, size=16, color="C00000")
    LINK = Style(color="0563C1", underline=True)
    KEY = Style(bold=True)
    HEAD_KEY = Style(bold=True, color="7F7F7F", size=9)  # "What", "Shapes", "Formula" in a tab's header
    HEAD_FORMULA = Style(font="Consolas", color="375623", size=10, bold=True, valign="center")
    START_SECTION = Style(bold=True, size=12, color="FFFFFF", fill="1F3864")
    BULLET = Style(color="404040")
    CONFIG = Style(num_fmt="#,##0", halign="left")
    PROB_LEFT = Style(num_fmt="0.00%", halign="left")
    EPS = Style(num_fmt="0.0E+00", halign="left")
    TEXT_OUT = Style(bold=True, color="1F3864")


# ---- tab colours: one per group of tabs --------------------------------------------------------------
TAB_COLORS = {
    "start": "FFC000",   # gold: the tour
    "input": "70AD47",   # green: the prompt and the tokenizer
    "model": "4472C4",   # blue: embeddings and the transformer blocks
    "output": "ED7D31",  # orange: ln_f, lm_head, prediction
    "explore": "7030A0",  # purple: logit lens, attention maps, steering
    "params": "8497B0",  # blue-grey: the weights
    "data": "A6A6A6",    # grey: vocabulary and tokenizer tables
}


def tab_group(name: str) -> str:
    if name == START:
        return "start"
    if name in (PROMPT, CHARS, PRETOKENS, BPE, TOKENS):
        return "input"
    if name == EMBEDDINGS or re.fullmatch(r"block_\d+", name):
        return "model"
    if name in (LN_F, LM_HEAD, PREDICTION):
        return "output"
    if name in (LENS, ATTENTION, STEER):
        return "explore"
    if name in (WTE, WPE, LN_F_PARAMS) or re.fullmatch(r"h\d+", name):
        return "params"
    return "data"


DATA_COL = 3  # numbers start at column C
BAND = 12  # columns a section's title band covers at most
TITLE_ROWS = 2  # frozen: title and one-line summary


@cache
def templates() -> dict:
    """Tab texts from templates/tabs.toml (kept out of the code so they can be edited freely)."""
    return tomllib.loads(template_text("tabs.toml"))


def template_text(name: str) -> str:
    """A file from templates/ (installed as the package xlgpt.templates)."""
    try:
        return resources.files("xlgpt.templates").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "templates" / name).read_text(encoding="utf-8")


@dataclass
class Layout:
    """Sizes that fix every address: model shape, context N and the tokenizer's limits."""

    cfg: GPT2Config
    context: int
    max_chars: int = 0
    max_word_bytes: int = 0
    top_k: int = 10
    live_tokenizer: bool = True

    @property
    def N(self) -> int:
        return self.context

    @property
    def C(self) -> int:
        return self.cfg.n_embd

    @property
    def H(self) -> int:
        return self.cfg.n_head

    @property
    def D(self) -> int:
        return self.cfg.head_dim

    @property
    def L(self) -> int:
        return self.cfg.n_layer

    @property
    def V(self) -> int:
        return self.cfg.vocab_size

    def stage_sheets(self) -> list[str]:
        tok = [CHARS, PRETOKENS, BPE] if self.live_tokenizer else []
        return [START, PROMPT, *tok, TOKENS, EMBEDDINGS, *[block_sheet(i) for i in range(self.L)],
                LN_F, LM_HEAD, PREDICTION, LENS, ATTENTION, STEER]

    def param_sheets(self) -> list[str]:
        return [WTE, WPE, *[params_sheet(i) for i in range(self.L)], LN_F_PARAMS]

    def data_sheets(self) -> list[str]:
        return [VOCAB, MERGES, UNICODE_TAB, BYTES] if self.live_tokenizer else [VOCAB]


HEADER_KEYS = (("what", "What"), ("shapes", "Shapes"), ("formula", "Formula"))


class Tab:
    """One stage tab being laid out: header from the templates, then sections downwards.

    Header: A1 links back to the start tab; B1 the title and B2 a one-line summary (both frozen), then the
    optional "what", "shapes" and "formula" texts of templates/tabs.toml (a text may span several lines)."""

    def __init__(self, book: Book, name: str, key: str | None = None, **fmt) -> None:
        self.book = book
        self.ws: Sheet = book.sheet(name)
        self.name = name
        t = templates().get(key or name, {})
        self.text = {k: (v.format(**fmt) if isinstance(v, str) else v) for k, v in t.items()}
        ws = self.ws
        ws.write(1, 1, "⌂ start", S.LINK)
        ws.link(1, 1, START, "A1", "back to the start tab")
        ws.write(1, 2, self.text.get("title", name), S.TITLE)
        ws.write(2, 2, self.text.get("summary", ""), S.SUBTITLE)
        row = 3
        for key_, label in HEADER_KEYS:
            for k, line in enumerate(self.text.get(key_, "").strip("\n").splitlines()):
                if k == 0:
                    ws.write(row, 1, label, S.HEAD_KEY)
                ws.write(row, 2, line, S.HEAD_FORMULA if key_ == "formula" else S.TEXT)
                row += 1
        self.row = row + 1
        ws.freeze = (TITLE_ROWS, 2)
        ws.tab_color = TAB_COLORS[tab_group(name)]
        ws.width(1, 7)
        ws.width(2, 14)
        ws.default_style_from = (DATA_COL, S.NUM)  # array outputs below take it without writing empty cells

    def define(self, name: str, rng: Range) -> Range:
        return self.book.define(name, rng)

    def section(self, title: str, explain: str = "", rows: int = 0, cols: int = 0,
                col_labels=None, row_labels: Range | None = None, positions: bool = True,
                col0: int = DATA_COL, row_texts: list[str] | None = None, style: Style | None = None) -> Range:
        """Allocate a section and return its data range (rows x cols starting at column `col0`).

        Rows: the title, the explanation (when given: usually the section's formula), the column labels, the data.

        col_labels: None for 0..cols-1, a list of constants, or a Range of cells to show (as formulas).
        row_labels: a column Range of texts shown in column B (e.g. the token texts)."""
        ws, r = self.ws, self.row
        ws.write(r, 2 if col0 == DATA_COL else col0, title, S.SECTION)
        first = col0 if col0 == DATA_COL else col0 + 1
        for c in range(first, col0 + min(max(cols, 1), BAND)):  # a band over the section (empty: the title runs on)
            ws.write(r, c, None, S.SECTION)
        if explain:  # the formula (or how to read the section) on a line of its own, under the title
            r += 1
            ws.write(r, 2 if col0 == DATA_COL else col0, explain, S.FORMULA)
        hdr = r + 1
        if cols:
            if col_labels is None:
                for j in range(cols):
                    ws.write(hdr, col0 + j, j, S.INDEX)
            elif isinstance(col_labels, Range):
                for j in range(cols):
                    src = col_labels.cell(j, 0) if col_labels.shape[0] > 1 else col_labels.cell(0, j)
                    ws.formula(hdr, col0 + j, f"={src.abs if src.sheet != self.name else src.local(False)}", S.INDEX,
                               value=Same(src))
            else:
                for j, lab in enumerate(col_labels):
                    ws.write(hdr, col0 + j, lab, S.INDEX)
        data = Range(self.name, hdr + 1, col0, hdr + rows, col0 + max(cols, 1) - 1)
        if style is not None:
            self.ws.column_style(data.c1, style, data.c2)
        for i in range(rows):
            if positions:
                ws.write(hdr + 1 + i, 1, i, S.POS)
            if row_labels is not None:
                src = row_labels.cell(i, 0)
                ws.formula(hdr + 1 + i, 2, f"={src.abs}", S.LABEL, value=Same(src))
            elif row_texts is not None:
                ws.write(hdr + 1 + i, 2, row_texts[i], S.LABEL)
        self.row = hdr + rows + 2
        return data

    def note(self, text: str, style: Style = S.NOTE, col: int = 2) -> None:
        self.ws.write(self.row, col, text, style)
        self.row += 1

    def skip(self, n: int = 1) -> None:
        self.row += n
