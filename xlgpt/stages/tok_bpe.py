"""The bpe tab: byte-pair merges for all pre-tokens at once, one step per band of rows.

step 0: one row per pre-token, one column per byte: the byte's token id (the `bytes` tab), and under it the
    rank of each adjacent pair (the `merges` tab's pair lookup; "–" = not a merge).
step s -> s+1, in every row at once: the lowest rank in the row (MIN), its first position (MATCH: leftmost on
    ties, as tiktoken), the merged token's id (INDEX(merges_id, rank+1)); the new row keeps the ids left of the
    pair, puts the merged id at the pair, and shifts the rest left by one (one array formula per row). Only
    the two pairs touching the merged token change rank: two lookups per row.
A row merges at every step until no pair is left, then it is finished: from the next band on it is blank (one
    scalar, no work), and its tokens are the ones in the band where it finished, band (bytes - tokens). The
    final section copies each row from that band (INDEX with the band's row offset).
A pre-token of n bytes needs at most n-1 merges, so M-1 steps always finish. A row still merging at step s
    has at most M-s tokens, so the bands narrow by one column per step, down to N columns (a row longer than
    N tokens means the prompt is over the context anyway; its length is kept, never truncated).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..layout import BPE, Layout, S, Tab
from ..xlsx.book import Range, col_letter
from .tok_data import ID_STYLE, NO_MERGE, RANK_STYLE, PairHash
from .tok_pretokens import Pretokens

if TYPE_CHECKING:  # (tok_model reads width from here)
    from .tok_model import BpeSteps

SCALARS = ["length", "lowest rank", "merge at", "new id", "left pair", "right pair"]
GAP = 1  # an empty column between the per-row numbers and the grid


@dataclass
class Bpe:
    final: Range  # [T x N] token ids after the last step, -1 = empty
    length: Range  # [T] tokens per pre-token
    steps: int


def width(lay: Layout, s: int) -> int:
    return max(lay.max_word_bytes - s, lay.N)


def bpe_tab(book, lay: Layout, pre: Pretokens, pairs: PairHash, m: BpeSteps) -> Bpe:
    """m: what each cell computes for the prompt the workbook is built with."""
    T, M, N = lay.N, lay.max_word_bytes, lay.N
    steps = max(M - 1, 0)
    tab = Tab(book, BPE, N=T, M=M, steps=steps)
    ws = tab.ws
    ns = len(SCALARS)
    c_grid = 3 + ns + GAP  # first grid column
    big = NO_MERGE
    prev = None  # (ids, ranks, scalar columns) of the previous step
    bands: list[Range] = []  # the ids of every step
    L0 = None
    for s in range(steps + 1):
        W = width(lay, s)
        last = s == steps
        ms = m.steps[s]
        title = f"step {s}: " + ("each byte's token id" if s == 0 else
                                 "token ids (blank: the row finished earlier)")
        explain = ("=VLOOKUP(byte, bytes_table, 5, FALSE): the byte's token id" if s == 0 else
                   "=IF(j>=length, -1, IF(j<merge at, previous[j], IF(j=merge at, new id, previous[j+1])))  "
                   "(one array formula per row)")
        labels = (SCALARS[:1] + [""] * (ns - 1) if last else SCALARS) + [""] * GAP + list(range(W))
        ids_sec = tab.section(title, explain, rows=T, cols=ns + GAP + W, col_labels=labels, row_labels=pre.text)
        ids = Range(BPE, ids_sec.r1, c_grid, ids_sec.r2, c_grid + W - 1)
        bands.append(ids)
        j_ids = Range(BPE, ids_sec.r1 - 1, c_grid, ids_sec.r1 - 1, c_grid + W - 1).local()
        L = ids_sec.cols(0)
        if not last:
            rk_sec = tab.section(f"step {s}: rank of each adjacent pair (id j, id j+1); – = not a merge",
                                 "=pair rank(id j, id j+1)" if s == 0 else
                                 "only the pairs next to the merge are new: left pair at merge at-1, "
                                 "right pair at merge at",
                                 rows=T, cols=ns + GAP + W, col_labels=[""] * (ns + GAP) + list(range(W)))
            ranks = Range(BPE, rk_sec.r1, c_grid, rk_sec.r2, c_grid + W - 1)
            j_rk = Range(BPE, rk_sec.r1 - 1, c_grid, rk_sec.r1 - 1, c_grid + W - 1).local()
        # ---- lengths ----
        for t in range(T):
            rr = ids_sec.r1 + t
            if s == 0:
                ws.formula(rr, L.c1, f"=MIN({pre.blen.cell(t).abs},{M})", S.INT, value=ms.length[t])
            else:
                pL, pm = prev[2][0].cell(t).local(False), prev[2][1].cell(t).local(False)
                ws.formula(rr, L.c1, f"=IF({pm}<{big},{pL}-1,{pL})", S.INT, value=ms.length[t])
        if s == 0:
            L0 = L
        # ---- the grid of this step ----
        if s == 0:
            for t in range(T):
                rr = ids_sec.r1 + t
                Lr = f"$C{rr}"
                boff = pre.boff.cell(t).abs
                for j in range(W):
                    byte = f"INDEX(prompt_bytes,{boff}+{j + 1})"
                    ws.formula(rr, c_grid + j, f"=IF({j}<{Lr},VLOOKUP({byte},bytes_table,5,FALSE),-1)", ID_STYLE,
                               value=ms.ids[t][j])
                if not last:
                    rk = rk_sec.r1 + t
                    for j in range(W):
                        a = f"{col_letter(c_grid + j)}{rr}"
                        b = f"{col_letter(c_grid + j + 1)}{rr}"
                        f = pairs.formula(a, b) if j + 1 < W else str(big)
                        ws.formula(rk, c_grid + j, f"=IF({j + 1}<{Lr},{f},{big})", RANK_STYLE, value=ms.ranks[t][j])
        else:
            p_ids, p_ranks, p_sc = prev
            # one array formula per row; a row that finished before (merge at = "–") is one blank scalar
            for t in range(T):
                q, nid, lr, rr_ = (p_sc[k].cell(t).local() for k in (2, 3, 4, 5))
                Lc = L.cell(t).local()
                x0 = p_ids.sub(t, 0, 1, W).local()
                x1 = p_ids.sub(t, 1, 1, W).local()
                ws.array(ids.rows(t), f"=IF({q}>={big},-1,IF({j_ids}>={Lc},-1,IF({j_ids}<{q},{x0},"
                                      f"IF({j_ids}={q},{nid},{x1}))))", ID_STYLE, value=[ms.ids[t]])
                if not last:
                    r0 = p_ranks.sub(t, 0, 1, W).local()
                    r1 = p_ranks.sub(t, 1, 1, W).local()
                    ws.array(ranks.rows(t), f"=IF({q}>={big},{big},IF({j_rk}+1>={Lc},{big},IF({j_rk}+1<{q},{r0},"
                                            f"IF({j_rk}+1={q},{lr},IF({j_rk}={q},{rr_},{r1})))))", RANK_STYLE,
                             value=[ms.ranks[t]])
        # ---- this step's merge, per row ----
        sc = [ids_sec.cols(k) for k in range(ns)]
        if not last:
            for t in range(T):
                rr = ids_sec.r1 + t
                Lr, mr, qr, nr = (f"{col_letter(sc[k].c1)}{rr}" for k in range(4))
                xrow = ids.rows(t).local()
                rrow = ranks.rows(t).local()
                low = f"MIN({rrow})"
                if s:  # a finished row stays finished
                    low = f"IF({prev[2][2].cell(t).local(False)}>={big},{big},{low})"
                ws.formula(rr, sc[1].c1, f"={low}", RANK_STYLE, value=ms.low[t])
                ws.formula(rr, sc[2].c1, f"=IF({mr}<{big},MATCH({mr},{rrow},0)-1,{big})", RANK_STYLE, value=ms.at[t])
                ws.formula(rr, sc[3].c1, f"=IF({mr}<{big},INDEX(merges_id,{mr}+1),-1)", ID_STYLE, value=ms.new_id[t])
                # after step 0 the row is an array formula: touch its first cell before INDEX reads another one
                # (IronCalc's first evaluation would read 0 otherwise; elsewhere it is a no-op)
                touch = f"{col_letter(c_grid)}{rr}*0+" if s else ""
                left = pairs.formula(f"INDEX({xrow},1,{qr})", nr)  # row and column: Gnumeric reads INDEX(row, k) as row k
                ws.formula(rr, sc[4].c1, f"=IF(AND({qr}>=1,{qr}<{big}),{touch}{left},{big})", RANK_STYLE,
                           value=ms.left[t])
                right = pairs.formula(nr, f"INDEX({xrow},1,{qr}+3)")
                ws.formula(rr, sc[5].c1, f"=IF({qr}+2<{Lr},{touch}{right},{big})", RANK_STYLE, value=ms.right[t])
            prev = (ids, ranks, sc)
        else:
            length = L

    # ---- the final tokens: each row from the band where it finished --------------------------------------------
    stride = bands[1].r1 - bands[0].r1 if len(bands) > 1 else 0
    assert all(b.r1 - bands[0].r1 == k * stride for k, b in enumerate(bands))
    region = Range(BPE, bands[0].r1, c_grid, bands[-1].r2, c_grid + width(lay, 0) - 1).local()
    fin = tab.section("the final tokens: row t as it was in the band where it finished, band = bytes - tokens",
                      f"=IF(j<length, INDEX(all bands, band*{stride} + t + 1, j+1), -1)  "
                      "(x*0+: see the left pair column)",
                      rows=T, cols=2 + GAP + N,
                      col_labels=["length", "band", ""] + list(range(N)), row_labels=pre.text)
    final = Range(BPE, fin.r1, fin.c1 + 2 + GAP, fin.r2, fin.c1 + 2 + GAP + N - 1)
    for t in range(T):
        rr = fin.r1 + t
        ws.formula(rr, fin.c1, f"={length.cell(t).local(False)}", S.INT, value=m.length[t])
        ws.formula(rr, fin.c1 + 1, f"={L0.cell(t).local(False)}-{length.cell(t).local(False)}", S.INT,
                   value=m.band[t])
        for j in range(N):
            at = f"$D{rr}*{stride}+{t + 1}"
            ws.formula(rr, final.c1 + j, f"=IF({j}<$C{rr},INDEX({region},{at},1)*0+INDEX({region},{at},{j + 1}),-1)",
                       ID_STYLE, value=m.final[t][j])
    ws.width(3, 8, 2 + ns)
    ws.width(3 + ns, 2)
    ws.width(c_grid, 6, c_grid + width(lay, 0) - 1)
    book.define("bpe_final", final)
    book.define("bpe_len", fin.cols(0))
    return Bpe(final, fin.cols(0), steps)
