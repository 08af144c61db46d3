"""The start tab: a guided tour, the first tab of the workbook.

Its title and summary are [start] in templates/tabs.toml (like every tab's); its body is templates/start.md, turned
into cells one line per row (the format is described at the top of that file): plain-words explanation, the
pipeline as hyperlinks to the tabs in order, how to change the prompt, what recalculation to expect, how to read
the formulas, and the model's size. The answer (prompt and predicted token) is shown live near the top.
"""
from __future__ import annotations

import re

from ..layout import LENS, PREDICTION, START, TAB_COLORS, TITLE_ROWS, Layout, S, template_text, templates
from ..contract import T
from ..model import SMALL_MODEL
from ..xlsx.book import Book, Same

_FIELD = re.compile(r"\{(\w+)\}")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_ENTRY = re.compile(r"^- ([\w{}]+):\s*(.*)$")


def start_fields(lay: Layout, model_name: str) -> dict[str, str]:
    cfg = lay.cfg
    n = cfg.n_params
    recalc = (f"This workbook ({n:,} parameters) recalculates in a second or two." if n < SMALL_MODEL else
              f"This workbook holds {n:,} parameters, so it opens in manual calculation showing the answer it was "
              "built with: after editing the prompt press F9 to recalculate (see the next line).")
    return {"model": model_name, "params": f"{n:,}", "L": str(cfg.n_layer), "H": str(cfg.n_head),
            "C": str(cfg.n_embd), "D": str(cfg.head_dim), "F": str(4 * cfg.n_embd), "V": f"{cfg.vocab_size:,}",
            "n_ctx": str(cfg.n_ctx), "N": str(lay.N), "recalc": recalc}


def fill(text: str, fields: dict[str, str]) -> str:
    """Replace {known} placeholders; leave every other brace alone (e.g. {=...})."""
    return _FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), text)


def start_lines(text: str | None = None) -> list[str]:
    """templates/start.md without its comment, as lines."""
    text = template_text("start.md") if text is None else text
    return _COMMENT.sub("", text).strip("\n").splitlines()


def tour_entries(lines: list[str], sheets: list[str], n_layer: int) -> list[tuple[str, str]]:
    """The `- tab: text` lines as (sheet, text) for the tabs this workbook has, {i} expanded per block."""
    out = []
    for line in lines:
        m = _ENTRY.match(line)
        if not m:
            continue
        name, text = m.groups()
        for i in (range(n_layer) if "{i}" in name else [None]):
            sheet = name.replace("{i}", str(i)) if i is not None else name
            if sheet in sheets:
                out.append((sheet, text.replace("{i}", str(i)) if i is not None else text))
    return out


def start_tab(book: Book, lay: Layout, model_name: str, sheets: list[str], source: str = "") -> None:
    """Lay out the start tab. `sheets`: every tab of the workbook, in order (links go only to these)."""
    ws = book.sheet(START)
    ws.tab_color = TAB_COLORS["start"]
    fields = start_fields(lay, model_name)
    head = templates().get("start", {})
    ws.write(1, 2, fill(head.get("title", "xlgpt"), fields), S.TITLE)
    ws.write(2, 2, fill(head.get("summary", ""), fields), S.SUBTITLE)
    ws.freeze = (TITLE_ROWS, 0)
    ws.width(1, 2)
    ws.width(2, 30)
    ws.width(3, 20)  # the answer in big letters: " Wednesday" fits
    ws.width(4, 100)
    r = TITLE_ROWS + 2
    lines = start_lines()
    for line in lines:
        m = _ENTRY.match(line)
        if line.startswith("## "):
            ws.write(r, 2, fill(line[3:], fields), S.START_SECTION)
            for c in (3, 4):
                ws.write(r, c, None, S.START_SECTION)
        elif m:
            for sheet, text in tour_entries([line], sheets, lay.L):
                ws.write(r, 2, sheet, S.LINK)
                ws.link(r, 2, sheet, "A1", f"go to the {sheet} tab")
                ws.write(r, 3, fill(text, fields), S.TEXT)
                r += 1
            continue
        elif line.startswith("* "):
            ws.write(r, 2, "•  " + fill(line[2:], fields), S.BULLET)
        elif line.startswith("  ") and line.strip():  # the continuation of a bullet; indented more: a formula
            text = fill(line.strip(), fields)
            ws.write(r, 2, " " * (len(line) - len(line.lstrip()) + 1) + text,
                     S.HEAD_FORMULA if text.startswith("=") else S.BULLET)
        elif line.strip() == "[[answer]]":
            r = _answer(book, ws, r)
            continue
        elif line.strip() == "[[config]]":
            r = _config(book, ws, r, lay, fields, model_name, source)
            continue
        elif line.strip():
            ws.write(r, 2, fill(line, fields), S.TEXT)
        r += 1


def _answer(book: Book, ws, r: int) -> int:
    """The prompt and the prediction, as formulas (they follow any edit)."""
    rows = [
        ("Prompt", T.prompt(), S.TEXT_OUT, ""),
        ("Next token (GPT-2's answer)", T.next_token(), S.BIG, "the most likely next token"),
        ("its probability", T.top_probs(), S.PROB_LEFT, ""),
        ("its token id", T.next_token_id(), S.CONFIG, ""),
    ]
    for label, name, style, note in rows:
        ws.write(r, 2, label, S.KEY)
        src = book[name].cell(0, 0)
        ws.formula(r, 3, f"={name}" if src.shape == book[name].shape else f"=INDEX({name},1,1)", style,
                   value=Same(src))
        if note:
            ws.write(r, 4, note, S.NOTE)
        r += 1
    ws.write(r, 2, "prediction", S.LINK)
    ws.link(r, 2, PREDICTION, "A1", "go to the prediction tab")
    ws.write(r, 3, "the ten most likely tokens and a chart", S.TEXT)
    ws.write(r + 1, 2, LENS, S.LINK)
    ws.link(r + 1, 2, LENS, "A1", "go to the logit_lens tab")
    ws.write(r + 1, 3, "how the answer forms, block by block", S.TEXT)
    return r + 2


def _config(book: Book, ws, r: int, lay: Layout, fields: dict[str, str], model_name: str, source: str) -> int:
    """The configuration as named cells: verify reads them instead of guessing from the tensors."""
    cfg = lay.cfg
    rows = [
        ("model", T.model_name(), model_name),
        ("where it came from", T.model_source(), source or model_name),
        ("parameters", None, fields["params"]),
        ("blocks (n_layer)", T.n_layer(), cfg.n_layer),
        ("heads per block (n_head)", T.n_head(), cfg.n_head),
        ("vector size (n_embd)", T.n_embd(), cfg.n_embd),
        ("head size (n_embd / n_head)", None, cfg.head_dim),
        ("MLP width (4 x n_embd)", None, 4 * cfg.n_embd),
        ("vocabulary (vocab_size)", T.vocab_size(), cfg.vocab_size),
        ("longest context (n_ctx)", T.n_ctx(), cfg.n_ctx),
        ("layer norm epsilon", T.layer_norm_epsilon(), float(cfg.layer_norm_epsilon)),
        ("token rows here (context)", None, lay.N),
        ("top tokens listed", T.show_top(), lay.top_k),
        ("prompt characters read at most", T.max_chars(), lay.max_chars),
        ("UTF-8 bytes per word at most", T.max_word_bytes(), lay.max_word_bytes),
        ("tokenizer", None, "in the sheet (chars, pretokens, bpe tabs)" if lay.live_tokenizer else
         "Python (token ids typed in on the tokens tab)"),
    ]
    for label, name, value in rows:
        ws.write(r, 2, label, S.KEY)
        style = S.CONFIG if isinstance(value, int) else S.EPS if isinstance(value, float) else S.TEXT
        cell = ws.write(r, 3, value, style)
        if name:
            book.define(name, cell)
        r += 1
    return r
