"""The pretokens tab: GPT-2's regular expression as a left-to-right scan, without a regex engine.

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

scan [P]: for every character k, the length of the match that would start there:
    run        how many characters from k on share k's class (each row looks at the next row)
    contraction 2 or 3 when k starts 's 't 'm 'd 're 've 'll (lower case only), else 0
    match      contraction, else the run of letters / numbers / others; a space (U+0020 only) before a
               letter, number or other joins it; a whitespace run followed by more text leaves its last
               character for the next word (all of the run when it ends the text; a single one stays alone).
pre-tokens [N]: start(t+1) = start(t) + match(start(t)), chained with INDEX; byte offset and length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..layout import PRETOKENS, Layout, S, Tab
from ..unicode_classes import SPACE
from ..xlsx.book import Range, Same, col_letter
from .tok_chars import Chars
from .tok_data import ID_STYLE, SMALL_INT

if TYPE_CHECKING:
    from .tok_model import PretokenSteps

CONTRACTIONS = {"s": 115, "t": 116, "m": 109, "d": 100, "re": (114, 101), "ve": (118, 101), "ll": (108, 108)}


@dataclass
class Pretokens:
    start: Range  # [T]
    length: Range  # [T] characters
    boff: Range  # [T]
    blen: Range  # [T] bytes
    text: Range  # [T]
    overflow: Range  # 1 cell: TRUE when the prompt holds more pre-tokens than rows
    max_bytes: Range  # 1 cell
    longest: Range  # 1 cell: text of the longest pre-token (in bytes)


def pretokens_tab(book, lay: Layout, ch: Chars, m: PretokenSteps) -> Pretokens:
    """m: what each cell computes for the prompt the workbook is built with."""
    P, T, M = lay.max_chars, lay.N, lay.max_word_bytes
    tab = Tab(book, PRETOKENS, P=P, N=T, M=M)
    ws = tab.ws
    r0 = tab.row
    info = ["pre-tokens", "more pre-tokens than rows", "longest pre-token (bytes)", "the longest one"]
    for k, lab in enumerate(info):
        ws.write(r0 + k, 2, lab, S.KEY)
    tab.row = r0 + len(info) + 1

    # ---- the scan ------------------------------------------------------------------------------------------------
    sc = tab.section("scan: the length of the match that would start at each character",
                     "match =IF(contraction, contraction, IF(class<>whitespace, run, IF(space before a non-space, "
                     "1 + next run, IF(run reaches the end, run, MAX(run - 1, 1)))))",
                     rows=P, cols=5, col_labels=["code point", "class", "run", "contraction", "match"],
                     row_labels=ch.shown)
    cpc, clc, runc, conc, mc = (col_letter(sc.c1 + j) for j in range(5))
    for k in range(P):
        rr = sc.r1 + k
        ws.formula(rr, sc.c1, f"={ch.cp.cell(k).abs}", SMALL_INT, value=Same(ch.cp.cell(k)))
        ws.formula(rr, sc.c1 + 1, f"={ch.cls.cell(k).abs}", SMALL_INT, value=Same(ch.cls.cell(k)))
        has1, has2 = k + 1 < P, k + 2 < P
        cp1 = f"{cpc}{rr + 1}" if has1 else "-1"
        cp2 = f"{cpc}{rr + 2}" if has2 else "-1"
        cl1 = f"{clc}{rr + 1}" if has1 else "0"
        run1 = f"{runc}{rr + 1}" if has1 else "0"
        run = f"=IF({clc}{rr}=0,0,IF({clc}{rr}={cl1},{run1}+1,1))" if has1 else f"=IF({clc}{rr}=0,0,1)"
        ws.formula(rr, sc.c1 + 2, run, SMALL_INT, value=m.run[k])
        two = ",".join(f"{cp1}={CONTRACTIONS[x]}" for x in "stmd")
        three = ",".join(f"AND({cp1}={CONTRACTIONS[x][0]},{cp2}={CONTRACTIONS[x][1]})" for x in ("re", "ve", "ll"))
        ws.formula(rr, sc.c1 + 3, f"=IF({cpc}{rr}<>39,0,IF(OR({two}),2,IF(OR({three}),3,0)))", SMALL_INT,
                   value=m.contraction[k])
        ws.formula(rr, sc.c1 + 4,
                   f"=IF({clc}{rr}=0,0,IF({conc}{rr}>0,{conc}{rr},IF({clc}{rr}<>{SPACE},{runc}{rr},"
                   f"IF(AND({cpc}{rr}=32,{cl1}>0,{cl1}<>{SPACE}),1+{run1},"
                   f"IF($A{rr}+{runc}{rr}>=n_chars,{runc}{rr},IF({runc}{rr}>=2,{runc}{rr}-1,1))))))", S.INT,
                   value=m.match[k])
    match = sc.cols(4).local()

    # ---- the pre-tokens ------------------------------------------------------------------------------------------
    labels = ["start", "characters", "byte offset", "bytes", f"over {M} bytes"]
    pt = tab.section("pre-tokens: each starts where the previous one ends", "start(t+1) = start(t) + characters(t);  "
                     "characters =INDEX(match, start+1);  text =MID(prompt, first unit, units)",
                     rows=T, cols=len(labels), col_labels=labels)
    cs, cl, cbo, cbl, cov = (col_letter(pt.c1 + j) for j in range(5))
    unit = ch.unit.abs
    for t in range(T):
        rr = pt.r1 + t
        ws.formula(rr, pt.c1, f"={cs}{rr - 1}+{cl}{rr - 1}" if t else "=0", SMALL_INT, value=m.start[t])
        ws.formula(rr, pt.c1 + 1, f"=IF({cs}{rr}<n_chars,INDEX({match},{cs}{rr}+1),0)", S.INT, value=m.length[t])
        ws.formula(rr, pt.c1 + 2, f"=IF({cl}{rr}>0,INDEX(chars_boff,{cs}{rr}+1),n_bytes)", SMALL_INT,
                   value=m.boff[t])
        end = f"{cs}{rr}+{cl}{rr}"
        ws.formula(rr, pt.c1 + 3, f"=IF({cl}{rr}>0,INDEX(chars_boff,{end})+INDEX(chars_nb,{end})-{cbo}{rr},0)", S.INT,
                   value=m.blen[t])
        ws.formula(rr, pt.c1 + 4, f"=IF({cbl}{rr}>{M},1,0)", ID_STYLE, value=m.over[t])
        first = f"INDEX({unit},{cs}{rr}+1)"
        end = f"IF({cs}{rr}+{cl}{rr}>=n_chars,prompt_units+1,INDEX({unit},{cs}{rr}+{cl}{rr}+1))"
        ws.formula(rr, 2, f'=IF({cl}{rr}>0,MID(prompt,{first},{end}-{first}),"")', S.LABEL, value=m.text[t])
    last = pt.r1 + T - 1
    text = Range(PRETOKENS, pt.r1, 2, last, 2)
    ws.formula(r0, 3, f'=COUNTIF({pt.cols(1).local()},">0")', S.INT, value=m.count)
    ws.formula(r0 + 1, 3, f"={cs}{last}+{cl}{last}<n_chars", S.TEXT, value=m.overflow)
    ws.formula(r0 + 2, 3, f"=MAX({pt.cols(3).local()})", S.INT, value=m.max_bytes)
    # the word the byte count above belongs to (the status message names both)
    ws.formula(r0 + 3, 3, f'=IFERROR(INDEX({text.local()},MATCH({col_letter(3)}{r0 + 2},{pt.cols(3).local()},0)),"")',
               S.TEXT, value=m.longest)
    ws.width(3, 11, 8)
    names = dict(pretok_start=pt.cols(0), pretok_len=pt.cols(1), pretok_boff=pt.cols(2), pretok_blen=pt.cols(3),
                 pretok_text=text)
    for n, rng in names.items():
        book.define(n, rng)
    return Pretokens(pt.cols(0), pt.cols(1), pt.cols(2), pt.cols(3), text,
                     Range(PRETOKENS, r0 + 1, 3, r0 + 1, 3), Range(PRETOKENS, r0 + 2, 3, r0 + 2, 3),
                     Range(PRETOKENS, r0 + 3, 3, r0 + 3, 3))
