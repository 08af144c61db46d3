"""The prompt tab and, when Python tokenizes, the tokens tab with the ids as input cells.

(The live in-sheet tokenizer writes its own tokens tab: stages/tokenizer.py.)
The rest of the workbook only relies on these names:
  prompt, bos, context, status            on the prompt tab
  positions, tokens_ids, tokens_text, n_tokens   on the tokens tab
"""
from __future__ import annotations

from ..layout import PROMPT, TOKENS, Layout, S, Tab
from ..tokenizer import Tokenizer
from ..xlsx.book import NOVALUE, Range
from .options import BuildOptions


def prompt_tab(book, lay: Layout, opts: BuildOptions) -> Tab:
    tab = Tab(book, PROMPT, V=lay.V, N=lay.N)
    ws, r = tab.ws, tab.row
    ws.width(2, 60)
    ws.write(r, 2, "Prompt", S.KEY)
    tab.define("prompt", ws.write(r + 1, 2, opts.prompt, S.TEXT_INPUT))  # text, even if it starts with "="
    ws.write(r + 3, 2, "Prepend <|endoftext|> (BOS, as TransformerLens does)", S.KEY)
    tab.define("bos", ws.write(r + 4, 2, bool(opts.bos), S.INPUT))
    ws.write(r + 6, 2, "Context: tokens this workbook holds", S.KEY)
    tab.define("context", ws.write(r + 7, 2, lay.N, S.INT))
    tab.row = r + 9
    return tab


def status_cell(tab: Tab, formula: str | None, value=NOVALUE) -> Range:
    """The cell that says what is wrong with the prompt ("" when all is well); value: what the formula says."""
    tab.ws.write(tab.row, 2, "Status", S.KEY)
    r = tab.row + 1
    cell = tab.ws.formula(r, 2, formula, S.ERROR, value=value) if formula else tab.ws.write(r, 2, "", S.ERROR)
    tab.row = r + 2
    return tab.define("status", cell)


def tokens_from_python(book, lay: Layout, ids: list[int], tok: Tokenizer, texts: list[str]) -> Tab:
    """Token ids typed in as inputs: editing one flows through every later stage. texts: the vocab tab's."""
    tab = Tab(book, TOKENS, V=lay.V, N=lay.N)
    ws = tab.ws
    pad = tok.eot_id if tok.eot_id is not None else 0
    count_row = tab.row
    tab.row += 2
    sec = tab.section("tokens", f"Type token ids into the yellow cells; blank rows are padding (id {pad}).",
                      rows=lay.N, cols=2, col_labels=["id (input)", "id used"])
    inputs, used = sec.cols(0), sec.cols(1)
    for i in range(lay.N):
        c = inputs.cell(i)
        ws.write(c.r1, c.c1, int(ids[i]) if i < len(ids) else None, S.INPUT)
        used_id = int(ids[i]) if i < len(ids) else pad
        ws.formula(c.r1, used.c1, f"=IF(ISNUMBER({c.a1}),{c.a1},{pad})", S.INT, value=used_id)
        ws.formula(c.r1, 2, f'=IF($A{c.r1}<n_tokens,INDEX(vocab_text,{used.cell(i).a1}+1),"")', S.LABEL,
                   value=texts[used_id] if i < len(ids) else "")
    ws.write(count_row, 2, "number of tokens", S.KEY)
    tab.define("n_tokens", ws.formula(count_row, 3, f"=COUNT({inputs.local()})", S.INT, value=len(ids)))
    tab.define("positions", Range(TOKENS, sec.r1, 1, sec.r2, 1))
    tab.define("tokens_input", inputs)
    tab.define("tokens_ids", used)
    tab.define("tokens_text", Range(TOKENS, sec.r1, 2, sec.r2, 2))
    return tab
