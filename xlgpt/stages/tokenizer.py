"""The live tokenizer: the sheet itself turns the prompt cell into GPT-2 token ids, exactly as tiktoken does.

    prompt -> chars (code points, classes, UTF-8 bytes) -> pretokens (GPT-2's regex as a scan)
           -> bpe (byte tokens, then M-1 merge steps in every pre-token at once) -> tokens (flattened, BOS, padding)

Only ordinary functions (INDEX, MATCH, MID, LEN, UNICODE/UNICHAR, IF, MIN, arithmetic) and legacy array formulas
over declared ranges: no LAMBDA, LET, dynamic arrays, macros or add-ins. Lookups are per cell (IronCalc does not
lift INDEX/MATCH/MID over arrays); array formulas do elementwise work only.

Every formula carries the value it computes for the prompt the workbook is built with, from tok_model (a Python
model of these steps). Defines what the rest of the workbook reads: positions, tokens_ids, tokens_text, n_tokens
(tokens tab) and status (prompt tab). Data tabs: merges, unicode, bytes.
"""
from __future__ import annotations

from ..layout import TOKENS, Layout, S, Tab
from ..tokenizer import Tokenizer
from ..xlsx.book import Range, Same, col_letter
from .tok_bpe import bpe_tab
from .tok_chars import chars_tab
from .tok_data import ID_STYLE, bytes_tab, merges_tab, unicode_tab
from .tok_decode import TokenText
from .tok_model import STATUS, TokenSteps, tokenizer_steps
from .tok_pretokens import pretokens_tab
from .tokens import status_cell


def limits_text(lay: Layout) -> str:
    return (f"Limits of this workbook: {lay.max_chars} characters (Excel counts UTF-16 units: an emoji counts 2), "
            f"{lay.max_word_bytes} UTF-8 bytes per word (pre-token), {lay.N} tokens. Past a limit the status "
            "below says so (and the prediction shows it) instead of a wrong token. Needs Excel 2013 or later for "
            "non-ASCII text (UNICODE, UNICHAR); Excel 2010 tokenizes ASCII prompts only. LibreOffice 7.4+, "
            "IronCalc: everything.")


def status_formula(lay: Layout, eot_ok: bool, pre) -> str:
    """The checks in tok_model.STATUS order, each message with the sheet's values joined in."""
    P, M, N = lay.max_chars, lay.max_word_bytes, lay.N
    over, most, longest = pre.overflow.abs, pre.max_bytes.abs, pre.longest.abs
    cond = {"chars": f"prompt_units>{P}", "bos": "bos", "empty": "n_tokens=0", "pretokens": over,
            "word": f"{most}>{M}", "tokens": f"n_tokens>{N}"}
    values = dict(units="prompt_units", longest=longest, bytes=most, n_tokens="n_tokens")
    cells = {k: f'"&{v}&"' for k, v in values.items()}  # joined into the message text
    f = '""'
    for kind, msg in reversed(STATUS):
        if kind != "bos" or not eot_ok:
            f = f'IF({cond[kind]},"{msg.format(P=P, M=M, N=N, **cells)}",{f})'
    return "=" + f


def live_tokenizer(book, lay: Layout, tok: Tokenizer, prompt_tab: Tab, prompt: str, bos: bool) -> TokenText:
    """Lay out the tokenizer tabs; returns token_text (callable id_ref -> formula, with .block for decoding).
    prompt, bos: what the workbook is built with (each formula's expected value follows from them)."""
    m = tokenizer_steps(prompt, bos, lay, tok)
    pairs = merges_tab(book, lay, tok)
    unicode_tab(book, lay)
    bytes_tab(book, lay, tok)
    ch = chars_tab(book, lay, m.chars)
    pre = pretokens_tab(book, lay, ch, m.pre)
    bpe = bpe_tab(book, lay, pre, pairs, m.bpe)
    token_text = TokenText(lay, tok)
    tokens_tab(book, lay, tok, bpe, token_text, m.tokens)

    prompt_tab.note(limits_text(lay))
    prompt_tab.skip()
    status_cell(prompt_tab, status_formula(lay, tok.eot_id is not None, pre), m.status)
    return token_text


def tokens_tab(book, lay: Layout, tok: Tokenizer, bpe, token_text: TokenText, m: TokenSteps) -> Tab:
    N, T = lay.N, lay.N
    eot = tok.eot_id if tok.eot_id is not None else 0
    pad = eot
    tab = Tab(book, TOKENS, "tokens_live", V=lay.V, N=N, eot=eot)
    ws, r = tab.ws, tab.row
    ws.write(r, 2, "number of tokens", S.KEY)
    n_tok = Range(TOKENS, r, 3, r, 3)
    ws.write(r + 1, 2, "BOS first (0 or 1)", S.KEY)
    bos_n = ws.formula(r + 1, 3, "=IF(bos,1,0)" if tok.eot_id is not None else "=0", S.INT, value=m.bos_n)
    ws.write(r + 2, 2, "id of <|endoftext|> (BOS and padding)", S.KEY)
    ws.write(r + 2, 3, eot, S.INT)
    tab.row = r + 4
    b = bos_n.local()

    fl = tab.section("where each pre-token's tokens go",
                     "first position = BOS + the tokens of the pre-tokens before it",
                     rows=T, cols=2, col_labels=["tokens", "first position"], row_labels=book["pretok_text"])
    cL, cf = col_letter(fl.c1), col_letter(fl.c1 + 1)
    for t in range(T):
        rr = fl.r1 + t
        ws.formula(rr, fl.c1, f"={bpe.length.cell(t).abs}", S.INT, value=Same(bpe.length.cell(t)))
        ws.formula(rr, fl.c1 + 1, f"={cf}{rr - 1}+{cL}{rr - 1}" if t else f"={b}", S.INT, value=m.first[t])
    first = fl.cols(1).local()
    ws.formula(n_tok.r1, 3, f"={b}+SUM({fl.cols(0).local()})", S.INT, value=m.n_tokens)
    n_tok = tab.define("n_tokens", n_tok)

    sec = tab.section("tokens: row i takes slot (i - first position) of its pre-token's final row on the bpe tab",
                      f"=IF(i<BOS, {eot}, INDEX(bpe_final, pre-token+1, slot+1));  padding {pad}",
                      rows=N, cols=3, col_labels=["pre-token", "slot", "id"])
    ct, cj, cid = (col_letter(sec.c1 + k) for k in range(3))
    for i in range(N):
        rr = sec.r1 + i
        ws.formula(rr, sec.c1, f"=IF(OR($A{rr}<{b},$A{rr}>=n_tokens),-1,MATCH($A{rr},{first},1)-1)", ID_STYLE,
                   value=m.pretoken[i])
        ws.formula(rr, sec.c1 + 1, f"=IF({ct}{rr}<0,-1,$A{rr}-INDEX({first},{ct}{rr}+1))", ID_STYLE, value=m.slot[i])
        ws.formula(rr, sec.c1 + 2, f"=IF($A{rr}<{b},{eot},IF({ct}{rr}<0,{pad},"
                                   f"IFERROR(INDEX(bpe_final,{ct}{rr}+1,{cj}{rr}+1),{pad})))", S.INT, value=m.ids[i])
    ids = tab.define("tokens_ids", sec.cols(2))
    tab.define("positions", Range(TOKENS, sec.r1, 1, sec.r2, 1))
    texts = token_text.block(tab, [ids.cell(i) for i in range(N)], title="token -> text", ids=m.ids)
    for i, t in enumerate(texts):
        rr = sec.r1 + i
        ws.formula(rr, 2, f'=IF($A{rr}<n_tokens,{t.local(False)},"")', S.LABEL,
                   value=Same(t) if i < m.n_tokens else "")
    tab.define("tokens_text", Range(TOKENS, sec.r1, 2, sec.r2, 2))
    del cid, n_tok
    return tab
