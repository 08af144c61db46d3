"""The chars tab: the prompt as characters (code points), their classes and their UTF-8 bytes.

units [P]: MID(prompt, i, 1) and its code. Excel counts UTF-16 units (an emoji is a surrogate pair, 2 units);
    LibreOffice, IronCalc and `formulas` count code points. In Excel UNICODE of half a pair is #VALUE!, so the
    first half takes UNICODE(MID(prompt, i, 2)), the whole pair, and the second half is marked -2, "not a
    character"; both worlds get the same list of code points. Excel 2010 has no UNICODE: CODE (ASCII only).
code points [P]: the k-th character is the unit where the running count of characters first reaches k
    (an exact MATCH); its class (letter / number / whitespace / other) by an approximate VLOOKUP on the
    `unicode` tab; its UTF-8 length and bytes by arithmetic; the running byte offset.
bytes [4P]: the prompt's UTF-8 bytes one per row (the byte g lies in the last character whose offset <= g).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..layout import CHARS, Layout, S, Tab
from ..xlsx.book import Range, col_letter
from .tok_data import ID_STYLE, SMALL_INT

if TYPE_CHECKING:
    from .tok_model import CharSteps

_SHOWN = "IF({c}<0,\"\",IFERROR(UNICHAR(IF({c}<32,{c}+9216,IF({c}=127,9249,{c}))),\"?\"))"


def shown_char(code_ref: str) -> str:
    """Formula text showing one code point, control characters as their visible symbols (as data.display)."""
    return _SHOWN.format(c=code_ref)


@dataclass
class Chars:
    units: Range  # prompt_units: LEN(prompt)
    n_chars: Range
    n_bytes: Range
    cp: Range  # [P] code points, -1 past the end
    cls: Range  # [P] class 1..4, 0 past the end
    shown: Range  # [P] the character as text
    nb: Range  # [P] UTF-8 length
    boff: Range  # [P] byte offset
    unit: Range  # [P] first UTF-16 unit of each character (1-based)
    bytes: Range  # [4P] the prompt's bytes


def chars_tab(book, lay: Layout, m: CharSteps) -> Chars:
    """m: what each cell computes for the prompt the workbook is built with."""
    P = lay.max_chars
    tab = Tab(book, CHARS, P=P, B=4 * P)
    ws = tab.ws
    r = tab.row
    summary = {"prompt_units": "units in the prompt (LEN)", "n_chars": f"characters read (at most {P})",
               "n_bytes": "UTF-8 bytes"}
    cells = {}
    for k, (name, label) in enumerate(summary.items()):
        ws.write(r + k, 2, label, S.KEY)
        cells[name] = Range(CHARS, r + k, 3, r + k, 3)
    tab.row = r + len(summary) + 1

    # ---- units -----------------------------------------------------------------------------------------------
    u = tab.section(f"units: MID(prompt, i+1, 1), one row per unit (at most {P})",
                    "code =IFERROR(UNICODE(unit), ...) ; a surrogate pair (Excel) becomes one code point",
                    rows=P, cols=5, col_labels=["unit", "code", "code point", "is a character", "characters so far"])
    cu, cc, ccp, ck, cn = (col_letter(u.c1 + j) for j in range(5))
    for i in range(P):
        rr = u.r1 + i
        ws.formula(rr, u.c1, f'=IF($A{rr}<prompt_units,MID(prompt,$A{rr}+1,1),"")', S.TEXT, value=m.unit_text[i])
        ws.formula(rr, u.c1 + 1, f"=IF($A{rr}>=prompt_units,-1,IFERROR(UNICODE({cu}{rr}),"
                                 f"IFERROR(UNICODE(MID(prompt,$A{rr}+1,2)),"
                                 f'IFERROR(UNICODE("a")*0-2,CODE({cu}{rr})))))', SMALL_INT, value=m.unit_code[i])
        # (should UNICODE give the halves of a pair instead of #VALUE!, this joins them)
        nxt = f"{cc}{rr + 1}" if i + 1 < P else "56320"
        ws.formula(rr, u.c1 + 2, f"=IF(AND({cc}{rr}>=55296,{cc}{rr}<=56319),({cc}{rr}-55296)*1024+{nxt}-56320+65536,"
                                 f"{cc}{rr})", SMALL_INT, value=m.unit_cp[i])
        ws.formula(rr, u.c1 + 3, f"=IF(OR({cc}{rr}<0,AND({cc}{rr}>=56320,{cc}{rr}<=57343)),0,1)", SMALL_INT,
                   value=m.unit_is_char[i])
        prev = f"{cn}{rr - 1}+" if i else ""
        ws.formula(rr, u.c1 + 4, f"={prev}{ck}{rr}", SMALL_INT, value=m.unit_count[i])
    unit_cp = u.cols(2)
    count = u.cols(4)

    # ---- code points -------------------------------------------------------------------------------------------
    labels = ["unit", "code point", "class", "L N S O", "UTF-8 bytes", "byte offset", 1, 2, 3, 4]
    c = tab.section("characters: the k-th character is the unit where 'characters so far' reaches k+1",
                    "class =VLOOKUP(code point, unicode_table, 2, TRUE);  bytes: 0xxxxxxx, "
                    "110xxxxx 10xxxxxx, 1110xxxx 10xxxxxx 10xxxxxx, 11110xxx 10xxxxxx 10xxxxxx 10xxxxxx",
                    rows=P, cols=len(labels), col_labels=labels)
    L = [col_letter(c.c1 + j) for j in range(len(labels))]
    cunit, ccode, ccls, cletter, cnb, coff = L[:6]
    count_ref = count.local()
    for k in range(P):
        rr = c.r1 + k
        ws.formula(rr, 2, "=" + shown_char(f"{ccode}{rr}"), S.LABEL, value=m.shown[k])
        ws.formula(rr, c.c1, f"=IFERROR(MATCH($A{rr}+1,{count_ref},0),prompt_units+1)", SMALL_INT, value=m.unit[k])
        ws.formula(rr, c.c1 + 1, f"=IF({cunit}{rr}<=MIN(prompt_units,{P}),INDEX({unit_cp.local()},{cunit}{rr}),-1)",
                   SMALL_INT, value=m.cp[k])
        ws.formula(rr, c.c1 + 2, f"=IF({ccode}{rr}<0,0,VLOOKUP({ccode}{rr},unicode_table,2,TRUE))", SMALL_INT,
                   value=m.cls[k])
        ws.formula(rr, c.c1 + 3, f'=IF({ccls}{rr}=0,"",MID("LNSO",{ccls}{rr},1))', S.TEXT, value=m.letter[k])
        ws.formula(rr, c.c1 + 5, f"={coff}{rr - 1}+{cnb}{rr - 1}" if k else "=0", SMALL_INT, value=m.boff[k])
    cp = c.cols(1)
    nb_rng = c.cols(4)
    for k in range(P):
        x = f"{ccode}{c.r1 + k}"
        ws.formula(c.r1 + k, nb_rng.c1, f"=IF({x}<0,0,1+({x}>=128)+({x}>=2048)+({x}>=65536))", SMALL_INT,
                   value=m.nb[k])
    # the header 1 2 3 4 (a row) against the characters (a column): operators broadcast everywhere, IF does not in
    # Gnumeric, so every operand gets the full [characters x 4] shape through +0*the other
    j_row, nb_col = Range(CHARS, c.r1 - 1, c.c1 + 6, c.r1 - 1, c.c1 + 9).local(), nb_rng.local()
    j, nb, cpr = f"({j_row}+0*{nb_col})", f"({nb_col}+0*{j_row})", f"({cp.local()}+0*{j_row})"
    # byte j of a character of n bytes: the lead byte 256 - 2^(8-n) + INT(cp / 64^(n-1)), then 128 + the next
    # 6 bits each: INT(cp / 64^(n-j)) minus 64 x INT(cp / 64^(n-j+1))  (MOD is not array-safe in IronCalc)
    ws.array(c.cols(6, 4), f"=IF({j}>{nb},-1,IF({j}=1,IF({nb}=1,{cpr},256-2^(8-{nb})+INT({cpr}/64^({nb}-1))),"
                           f"128+INT({cpr}/64^({nb}-{j}))-64*INT({cpr}/64^({nb}-{j}+1))))", ID_STYLE,
             value=m.bytes4)
    boff = c.cols(5)
    last = c.r1 + P - 1
    ws.formula(cells["n_chars"].r1, 3, f"={cn}{u.r1 + P - 1}", S.INT, value=m.n_chars)
    ws.formula(cells["n_bytes"].r1, 3, f"={coff}{last}+{cnb}{last}", S.INT, value=m.n_bytes)
    ws.formula(cells["prompt_units"].r1, 3, "=LEN(prompt)", S.INT, value=m.prompt_units)
    for name, rng in cells.items():
        book.define(name, rng)
    book.define("chars_cp", cp)
    book.define("chars_class", c.cols(2))
    book.define("chars_nb", nb_rng)
    book.define("chars_boff", boff)
    book.define("chars_unit", c.cols(0))
    book.define("chars_bytes", c.cols(6, 4))

    # ---- bytes ----------------------------------------------------------------------------------------------------
    B = 4 * P
    b = tab.section("the prompt's UTF-8 bytes, one per row", "character =MATCH(g, byte offset, 1)-1;  "
                    "byte =INDEX(bytes, character+1, g - its offset + 1)", rows=B, cols=2,
                    col_labels=["character", "byte"])
    cch = col_letter(b.c1)
    anchor = Range(CHARS, c.r1, c.c1 + 6, c.r1, c.c1 + 6).local()
    for g in range(B):
        rr = b.r1 + g
        ws.formula(rr, b.c1, f"=IF($A{rr}<n_bytes,MATCH($A{rr},chars_boff,1)-1,-1)", ID_STYLE, value=m.byte_char[g])
        # {anchor}*0: IronCalc's first evaluation reads a cell of an array formula through INDEX as 0 unless the
        # array formula (its top-left cell) was evaluated first
        ws.formula(rr, b.c1 + 1, f"=IF({cch}{rr}<0,-1,{anchor}*0+INDEX(chars_bytes,{cch}{rr}+1,$A{rr}-INDEX(chars_boff,"
                                 f"{cch}{rr}+1)+1))", ID_STYLE, value=m.byte[g])
    book.define("prompt_bytes", b.cols(1))
    ws.width(3, 9, 3 + 12)
    return Chars(book["prompt_units"], book["n_chars"], book["n_bytes"], cp, c.cols(2), Range(CHARS, c.r1, 2, last, 2),
                 nb_rng, boff, c.cols(0), b.cols(1))
