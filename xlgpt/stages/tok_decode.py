"""From token id back to text, in formulas: GPT-2's byte-level decoding and UTF-8 with errors="replace".

vocab_token holds each token as in vocab.json: one character per byte ("Ġ" is the space byte 32). Per id, one row
in each of these sections (D = the longest token's bytes):
    bytes      byte j = the byte the character MID(token, j+1, 1) stands for (arithmetic on its UNICODE)
    needs      continuation bytes a lead byte announces: C2-DF 1, E0-EF 2, F0-F4 3 (else 0)
    length     of the piece that would start at j: the lead byte plus its valid continuation bytes (E0 needs A0-BF
               next, ED 80-9F, F0 90-BF, F4 80-8F, the rest 80-BF): a complete character, or the "maximal
               subpart" that Python's decode(errors="replace") turns into one U+FFFD
    shown      the code point of the piece starting at j (65533 = U+FFFD when incomplete or invalid, control
               characters as their symbols ␀..␟ ␡), or -1 when no piece starts at j: only a continuation byte
               can be inside a piece, and it is when one of the 3 bytes before it is a lead whose length reaches it
    piece      UNICHAR(shown), or ""; the text joins the pieces with &.
bytes and piece are one formula per cell (IronCalc does not lift MID/UNICHAR over arrays); needs, length and shown
are array formulas (one per row and part: bytes 16.. are one scalar unless the token is that long). A piece first
touches its row's array formula (anchor*0 + shown): IronCalc's first evaluation after loading reads a cell of an
array formula as 0 unless that array formula ran before. <|endoftext|> is a special token shown as its name.
Equal to xlgpt.stages.data.display(tokenizer.token_text(id)) for every id. In Excel 2010 (no UNICODE/UNICHAR)
the text falls back to vocab_text, the same text computed when the workbook was written.
"""
from __future__ import annotations

from ..layout import DATA_COL, Layout, S, Tab
from ..tokenizer import BYTE_CHAR, EOT, Tokenizer
from ..xlsx.book import NOVALUE, Range, Same, col_letter
from .tok_data import ID_STYLE, SMALL_INT
from .tok_model import DecodeSteps, decode_steps

PAD = 3  # extra byte columns so that bytes j+1..j+3 exist for the last j
SPLIT = 16  # bytes beyond this are computed only for tokens that long


def byte_of_char(code: str) -> str:
    """The byte a byte-level character stands for, by arithmetic (the bytes tab lists the same map):
    printable characters are their own byte; U+0100..U+0120 are bytes 0..32, U+0121..U+0142 bytes 127..160,
    U+0143 byte 173. (An INDEX into a 324-row table would cost the `formulas` engine ~5 ms per byte.)"""
    return f"IF({code}<256,{code},IF({code}<289,{code}-256,IF({code}<323,{code}-162,173)))"


def _check_byte_map() -> None:
    for b, ch in BYTE_CHAR.items():
        c = ord(ch)
        assert (c if c < 256 else c - 256 if c < 289 else c - 162 if c < 323 else 173) == b, b


_check_byte_map()


class TokenText:
    """token_text(ref) -> formula text for one id (a vocab_text lookup, cheap: logit lens, sampling).
    token_text.block(tab, ids) -> lays out the formula decoding for several ids, returns their text cells."""

    def __init__(self, lay: Layout, tok: Tokenizer) -> None:
        self.lay = lay
        self.tok = tok
        self.eot = tok.eot_id
        # <|endoftext|> is a special token shown as its name: it need not widen every block to 13 bytes
        self.D = max([len(tok.token_bytes(i)) for i in range(tok.vocab_size) if i != tok.eot_id] + [1])

    def __call__(self, ref: str) -> str:
        return f"INDEX(vocab_text,{ref}+1)"

    def text(self, i: int) -> str:
        """What the vocab tab shows for token i (and the decoding blocks compute)."""
        from .data import vocab_texts

        if not hasattr(self, "_texts"):
            self._texts = vocab_texts(self.tok)
        return self._texts[i]

    def block(self, tab: Tab, id_cells: list[Range], labels: list[str] | None = None, col0: int | None = None,
              title: str = "token id -> text", ids: list[int] | None = None) -> list[Range]:
        """ids: the ids id_cells hold when the workbook is built (each cell's expected value; None: not known)."""
        steps = None if ids is None else decode_steps(self.tok, ids, self.D)
        return decode_block(tab, id_cells, self.D, labels, col0, title, self.eot, steps)


def decode_block(tab: Tab, ids: list[Range], D: int, labels: list[str] | None = None, col0: int | None = None,
                 title: str = "token id -> text", eot: int | None = None, m: DecodeSteps | None = None) -> list[Range]:
    """Sections on `tab` with one row per id, from tab.row downwards (col0 None: the tab's usual columns, and
    tab.row moves past them), or from tab.row at column col0 (tab.row stays: the block sits to the right of
    whatever comes next). Returns each id's text cell. m: what the cells compute (None: NOVALUE)."""
    ws, n = tab.ws, len(ids)

    def value(field: str, i: int, j: int | None = None, z: int | None = None):
        """m.field of id i (at byte j; bytes j..z-1 as a row)."""
        if m is None:
            return NOVALUE
        v = getattr(m, field)[i]
        return v if j is None else v[j] if z is None else [v[j:z]]

    c0 = DATA_COL if col0 is None else col0
    row = tab.row

    def section(name: str, explain: str, cols: int, first: int = 0) -> Range:
        """Title row, header row (j = first ..), one row per id; titles and labels in the column left of c0."""
        nonlocal row
        ws.write(row, c0 - 1, f"{title}: {name}", S.SECTION)
        ws.write(row, c0, explain, S.FORMULA)
        for j in range(cols):
            ws.write(row + 1, c0 + j, first + j, S.INDEX)
        for i in range(n):
            if col0 is None:
                ws.write(row + 2 + i, 1, i, S.POS)
            if labels is not None:
                ws.write(row + 2 + i, c0 - 1, labels[i], S.LABEL)
        rng = Range(tab.name, row + 2, c0, row + 1 + n, c0 + cols - 1)
        row += n + 3
        return rng

    head = section("the token as stored (byte-level) and its text", "text = the pieces below joined with &", 4)
    for j, lab in enumerate(["id", "stored", "bytes", "text"]):
        ws.write(head.r1 - 1, c0 + j, lab, S.INDEX)
    byt = section("bytes", "c =UNICODE(MID(stored, j+1, 1)); byte =IF(c<256, c, IF(c<289, c-256, IF(c<323, c-162, "
                  "173)));  -1 past the end", D + PAD)
    need = section("continuation bytes each byte announces (as a lead byte)",
                   "=(b>=194)*(b<=223) + 2*(b>=224)*(b<=239) + 3*(b>=240)*(b<=244)", D)
    plen = section("length of the piece that would start at each byte (3 columns of 1 in front)",
                   "= 1 + the valid continuation bytes that follow (at most 'needs')", PAD + D, first=-PAD)
    shown = section("the code point of the piece starting at each byte (-1: inside a piece, 65533: U+FFFD)",
                    "complete: the bits of the lead and continuation bytes; "
                    "code < 32 -> 9216 + code (␀..␟), 127 -> ␡", D)
    piece = section("the pieces", '=IF(shown<0, "", UNICHAR(shown))', D)
    if col0 is None:
        tab.row = row

    cid, cstored, cn = (col_letter(c0 + k) for k in range(3))
    out = []
    for i, ref in enumerate(ids):
        r = head.r1 + i
        ws.formula(r, c0, f"={ref.abs if ref.sheet != tab.name else ref.local(False)}", S.INT,
                   value=Same(ref) if m is None else m.ids[i])
        ws.formula(r, c0 + 1, f"=INDEX(vocab_token,{cid}{r}+1)", S.TEXT, value=value("stored", i))
        ws.formula(r, c0 + 2, f"=LEN({cstored}{r})", S.INT, value=value("n", i))
        rb, rs, rp = byt.r1 + i, shown.r1 + i, piece.r1 + i
        for j in range(D + PAD):
            if j < D:
                code = f"UNICODE(MID({cstored}${r},{j + 1},1))"
                ws.formula(rb, c0 + j, f"=IF({j}<{cn}${r},{byte_of_char(code)},-1)", ID_STYLE,
                           value=value("bytes", i, j))
            else:
                ws.write(rb, c0 + j, -1, ID_STYLE)
        for j in range(PAD):
            ws.write(plen.r1 + i, c0 + j, 1, SMALL_INT)
        for j in range(D):
            L = col_letter(c0 + j)
            anchor = f"${col_letter(c0 + (SPLIT if j >= SPLIT else 0))}{rs}"  # see below
            ws.formula(rp, c0 + j, f'=IF({anchor}*0+{L}{rs}<0,"",UNICHAR({L}{rs}))', S.TEXT,
                       value=value("piece", i, j))
        joined = "&".join(f"{col_letter(c0 + j)}{rp}" for j in range(D))
        special = f'IF({cid}{r}={eot},"{EOT}",' if eot is not None else "("
        ws.formula(r, c0 + 3, f"=IFERROR({special}{joined}),INDEX(vocab_text,{cid}{r}+1))", S.LABEL,
                   value=value("text", i))
        out.append(Range(tab.name, r, c0 + 3, r, c0 + 3))

    # the array sections, one array formula per row and part: bytes SPLIT.. only matter for the few long tokens,
    # so that part of each row is one scalar (its fill value) unless the token is longer than SPLIT bytes
    parts = [(0, min(D, SPLIT))] + ([(SPLIT, D)] if D > SPLIT else [])
    for i in range(n):
        n_ref = f"${cn}${head.r1 + i}"
        for a, z in parts:
            def at(rng: Range, k: int) -> str:  # row i of a section, columns a+k .. z-1+k (bytes: j+k)
                return Range(tab.name, rng.r1 + i, rng.c1 + a + k, rng.r1 + i, rng.c1 + z - 1 + k).local()

            b, b2, b3, b4 = (at(byt, k) for k in range(4))
            nd = at(need, 0)
            pl, p1, p2, p3 = (at(plen, PAD - k) for k in range(4))
            f_need = f"({b}>=194)*({b}<=223)+2*({b}>=224)*({b}<=239)+3*({b}>=240)*({b}<=244)"
            c2 = f"({nd}>=1)*({b2}>=128+32*({b}=224)+16*({b}=240))*({b2}<=191-32*({b}=237)-48*({b}=244))"
            f_len = f"1+{c2}*(1+({nd}>=2)*({b3}>=128)*({b3}<=191)*(1+({nd}>=3)*({b4}>=128)*({b4}<=191)))"
            inside = f"({b}>=128)*({b}<=191)*(({p1}>=2)+({p2}>=3)+({p3}>=4))"
            code = (f"IF({nd}=1,({b}-192)*64+{b2}-128,IF({nd}=2,({b}-224)*4096+({b2}-128)*64+{b3}-128,"
                    f"({b}-240)*262144+({b2}-128)*4096+({b3}-128)*64+{b4}-128))")
            f_shown = (f"IF(({b}<0)+{inside}>0,-1,IF({b}<128,IF({b}<32,{b}+9216,IF({b}=127,9249,{b})),"
                       f"IF(({nd}>0)*({pl}={nd}+1),{code},65533)))")
            for sec, f, fill, style, off, field in ((need, f_need, 0, SMALL_INT, 0, "need"),
                                                    (plen, f_len, 1, SMALL_INT, PAD, "plen"),
                                                    (shown, f_shown, -1, SMALL_INT, 0, "shown")):
                rng = Range(tab.name, sec.r1 + i, sec.c1 + off + a, sec.r1 + i, sec.c1 + off + z - 1)
                ws.array(rng, f"=IF({n_ref}<={a},{fill},{f})" if a else f"={f}", style, value=value(field, i, a, z))
    return out
