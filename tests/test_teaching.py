"""The workbook teaches: valid defined names, a start tab whose links go to every tab, headers from templates/,
links back to the start tab, frozen headers, colour scales and tab colours.

Checks the file as written (workbook.xml and the sheets, read back with openpyxl) for the toy model with the
Python tokenizer, and again for the default build (the in-sheet tokenizer) when that builds.
"""
from __future__ import annotations

import re
import zipfile
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import openpyxl
import pytest

from xlgpt.layout import TAB_COLORS, template_text, templates, tab_group
from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book, make_layout
from xlgpt.stages.start import start_lines, tour_entries
from xlgpt.xlsx.book import Formula, col_number
from xlgpt.xlsx.writer import write_book

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
MAX_ROWS, MAX_COLS = 1_048_576, 16_384
# tabs whose header formula is the exact text of one of their formulas (the tokenizer's describe theirs in words)
WORKED = {"embeddings", "block", "ln_f", "lm_head", "prediction", "logit_lens", "attention", "steer"}


@cache
def built(live: bool):
    """(path, book, layout) of the toy model's workbook; live: the in-sheet tokenizer (the default build)."""
    import tempfile

    model = load_model("toy")
    opts = BuildOptions(live_tokenizer=live)
    book = build_book(model, opts)
    path = Path(tempfile.mkdtemp(prefix="xlgpt-teach-")) / ("live.xlsx" if live else "toy.xlsx")
    write_book(book, path)
    return path, book, make_layout(model, opts)


@pytest.fixture(scope="module", params=[False, True], ids=["python-tokenizer", "live-tokenizer"])
def wb(request):
    live = request.param
    try:
        path, book, lay = built(live)
    except Exception as e:  # the live tokenizer is its own module: report, but test the rest
        if live:
            pytest.skip(f"the default (live tokenizer) build fails: {type(e).__name__}: {e}")
        raise
    return path, book, lay, openpyxl.load_workbook(path)


@cache
def workbook_xml(path: Path) -> ET.Element:
    with zipfile.ZipFile(path) as z:
        return ET.fromstring(z.read("xl/workbook.xml"))


def sheet_xml(path: Path) -> dict[str, str]:
    """Sheet name -> its XML text."""
    with zipfile.ZipFile(path) as z:
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        target = {r.get("Id"): r.get("Target") for r in rels}
        out = {}
        for s in workbook_xml(path).find("m:sheets", NS):
            rid = s.get("{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id")
            t = target[rid].lstrip("/")
            out[s.get("name")] = z.read(t if t.startswith("xl/") else "xl/" + t).decode("utf-8")
        return out


def template_key(sheet: str, live: bool) -> str:
    if re.fullmatch(r"block_\d+", sheet):
        return "block"
    if sheet == "tokens" and live:
        return "tokens_live"
    return sheet


def pattern(template: str) -> re.Pattern:
    """A template with its {placeholders} as wildcards ({{ and }} are literal braces)."""
    parts = re.split(r"(\{\{|\}\}|\{\w+\})", template)
    rx = "".join("\\{" if p == "{{" else "\\}" if p == "}}" else ".+?" if re.fullmatch(r"\{\w+\}", p or "")
                 else re.escape(p) for p in parts)
    return re.compile(rx + "$", re.S)


# ---- defined names ------------------------------------------------------------------------------------
CELL_A1 = re.compile(r"^([A-Za-z]{1,3})([0-9]+)$")
CELL_R1C1 = re.compile(r"^([Rr][0-9]*([Cc][0-9]*)?|[Cc][0-9]*)$")
REF = re.compile(r"^(?:'((?:[^']|'')+)'|([A-Za-z_][\w.]*))!\$([A-Z]{1,3})\$([0-9]+)(?::\$([A-Z]{1,3})\$([0-9]+))?$")


def looks_like_cell(name: str) -> bool:
    m = CELL_A1.match(name)
    if m and col_number(m.group(1)) <= MAX_COLS and 1 <= int(m.group(2)) <= MAX_ROWS:
        return True
    return bool(CELL_R1C1.match(name))


def test_looks_like_cell():
    assert looks_like_cell("A1") and looks_like_cell("xfd1048576") and looks_like_cell("R1C1") and looks_like_cell("c")
    assert not looks_like_cell("wte") and not looks_like_cell("h0_ln_1_w") and not looks_like_cell("block_0_q_h0")


def test_defined_names_are_valid(wb):
    path, book, _, _ = wb
    root = workbook_xml(path)
    sheets = [s.get("name") for s in root.find("m:sheets", NS)]
    names = root.find("m:definedNames", NS)
    assert names is not None and len(names) == len(book.names)
    seen = set()
    for dn in names:
        name, ref = dn.get("name"), dn.text
        assert re.fullmatch(r"[A-Za-z_\\][A-Za-z0-9_.]*", name) and len(name) <= 255, name
        assert not looks_like_cell(name), f"{name} looks like a cell reference"
        assert name.lower() not in seen, f"duplicate name {name} (Excel names are case-insensitive)"
        seen.add(name.lower())
        m = REF.match(ref)
        assert m, f"{name}: {ref} is not an absolute range"
        sheet = (m.group(1) or "").replace("''", "'") or m.group(2)
        assert sheet in sheets, f"{name}: no sheet {sheet}"
        c1, r1 = col_number(m.group(3)), int(m.group(4))
        c2, r2 = (col_number(m.group(5)), int(m.group(6))) if m.group(5) else (c1, r1)
        assert 1 <= r1 <= r2 <= MAX_ROWS and 1 <= c1 <= c2 <= MAX_COLS, f"{name}: {ref}"


def test_the_main_tensors_have_names(wb):
    """Every stage range a learner would type into a formula has a name, named the same way in every block."""
    _, book, lay, _ = wb
    per_block = ["resid_pre", "ln_1", "ln_1_mean", "ln_1_var", "qkv", "q", "k", "v", "z", "attn_out", "resid_mid",
                 "ln_2", "mlp_fc", "mlp_gelu", "mlp_out", "resid_post"]
    per_head = ["q_h", "k_h", "v_h", "scores_h", "attn_max_h", "attn_sum_h", "attn_h", "z_h"]
    params = ["ln_1_w", "ln_1_b", "attn_c_attn_w", "attn_c_attn_b", "attn_c_proj_w", "attn_c_proj_b", "ln_2_w",
              "ln_2_b", "mlp_c_fc_w", "mlp_c_fc_b", "mlp_c_proj_w", "mlp_c_proj_b"]
    want = ["prompt", "tokens_ids", "tokens_text", "positions", "n_tokens", "wte", "wpe", "embeddings_wte",
            "embeddings_wpe", "embeddings_out", "ln_f", "ln_f_w", "ln_f_b", "lm_head_x", "lm_head_logits",
            "prediction_probs", "next_token_id", "next_token", "top_tokens", "top_probs", "lens_logits", "lens_probs",
            "steer_vector", "steer_add"]
    for i in range(lay.L):
        want += [f"block_{i}_{n}" for n in per_block] + [f"h{i}_{n}" for n in params]
        want += [f"block_{i}_{n}{h}" for n in per_head for h in range(lay.H)]
        want += [f"attention_{i}_h{h}" for h in range(lay.H)]
    missing = [n for n in want if n not in book.names]
    assert not missing, missing


# ---- the start tab ------------------------------------------------------------------------------------
def test_start_is_the_first_and_active_tab(wb):
    path, _, _, xl = wb
    assert xl.sheetnames[0] == "start"
    view = workbook_xml(path).find("m:bookViews/m:workbookView", NS)
    assert int(view.get("activeTab", "0")) == 0


def test_start_links_to_every_tab(wb):
    _, _, lay, xl = wb
    ws = xl["start"]
    linked = {}
    for row in ws.iter_rows():
        for cell in row:
            if cell.hyperlink is not None:
                loc = cell.hyperlink.location
                m = re.fullmatch(r"'?(.+?)'?!A1", loc or "")
                assert m, f"start!{cell.coordinate}: link {loc!r} is not to a tab's A1"
                sheet = m.group(1)
                assert sheet in xl.sheetnames, f"start!{cell.coordinate} links to a missing tab {sheet}"
                assert cell.value == sheet, f"start!{cell.coordinate} says {cell.value!r} but links to {sheet}"
                linked[sheet] = cell.coordinate  # the last link: the pipeline list comes after the answer
    assert set(xl.sheetnames) - {"start"} <= set(linked), set(xl.sheetnames) - set(linked)
    # the pipeline lists the stage tabs in workbook order
    stage_rows = [ws[linked[s]].row for s in lay.stage_sheets() if s != "start"]
    assert stage_rows == sorted(stage_rows)


def test_start_template_names_real_tabs():
    """Every `- tab:` line of templates/start.md names a tab some build has (a typo would silently vanish)."""
    model = load_model("toy")
    lay = make_layout(model, BuildOptions(live_tokenizer=True))
    possible = lay.stage_sheets() + lay.param_sheets() + lay.data_sheets()
    lines = start_lines()
    entries = [ln for ln in lines if re.match(r"^- [\w{}]+:", ln)]
    assert len(tour_entries(entries, possible, lay.L)) == sum(lay.L if "{i}" in ln.split(":")[0] else 1
                                                             for ln in entries)
    assert "[[answer]]" in lines and "[[config]]" in lines


def test_start_text_is_filled_in(wb):
    _, _, lay, xl = wb
    ws = xl["start"]
    texts = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str) and not c.value.startswith("=")]
    joined = "\n".join(texts)
    assert not re.search(r"\{(model|params|L|H|C|D|F|V|n_ctx|N|recalc|i)\}", joined)
    assert "Formulas > Calculation Options > Manual" in joined and "F9" in joined
    assert "Recalculate Hard" in joined and "Always recalculate" in joined
    assert f"{lay.C} numbers" in joined
    formulas = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("=")]
    assert "=next_token" in formulas and "=prompt" in formulas


# ---- every tab's header --------------------------------------------------------------------------------
def test_stage_tabs_have_their_header(wb):
    path, book, lay, xl = wb
    live = lay.live_tokenizer
    tpl = templates()
    for sheet in lay.stage_sheets():
        t = tpl[template_key(sheet, live)]
        ws = xl[sheet]
        assert pattern(t["title"]).match(ws["B1"].value or ""), (sheet, ws["B1"].value, t["title"])
        assert pattern(t["summary"]).match(ws["B2"].value or ""), (sheet, ws["B2"].value)
        if sheet in ("start", "prompt"):
            continue
        for key, label in (("what", "What"), ("shapes", "Shapes"), ("formula", "Formula")):
            assert t.get(key), f"templates/tabs.toml [{template_key(sheet, live)}] has no {key}"
            lines = t[key].strip("\n").splitlines()
            col_a = [ws.cell(r, 1).value for r in range(3, 12)]
            first = col_a.index(label) + 3
            for k, line in enumerate(lines):
                assert pattern(line).match(ws.cell(first + k, 2).value or ""), (sheet, key, line)


def test_header_formulas_are_real(wb):
    """A tab's header formula is the text of one of its formulas (so the header explains the cells below)."""
    _, book, lay, _ = wb
    for sheet in lay.stage_sheets():
        key = template_key(sheet, lay.live_tokenizer)
        if key not in WORKED:
            continue
        ws = book.sheet(sheet)
        texts = {a.text for a in ws.arrays} | {v.text for v, _ in ws.cells.values() if isinstance(v, Formula)}
        i = sheet.split("_")[1] if key == "block" else None
        shown = [ws.cells[(r, 2)][0] for r in range(3, 12) if isinstance(ws.cells.get((r, 2), (None,))[0], str)]
        worked = [t.split()[0] for t in shown if t.startswith("=")]
        assert worked, f"{sheet}: no worked formula in the header"
        for f in worked:
            if key == "steer" and "steer_layer" in f:  # shown as block_0's own
                assert f in {a.text for a in book.sheet("block_0").arrays}, f
                continue
            assert f in texts, f"{sheet}: the header shows {f} but no cell has that formula (block {i})"


def test_every_tab_links_back_to_start(wb):
    _, _, _, xl = wb
    for ws in xl.worksheets:
        if ws.title == "start":
            continue
        assert ws["A1"].hyperlink is not None and ws["A1"].hyperlink.location == "start!A1", ws.title


def test_stage_tabs_freeze_their_header(wb):
    _, _, lay, xl = wb
    for sheet in lay.stage_sheets():
        assert xl[sheet].freeze_panes, f"{sheet} has no frozen panes"
        if sheet not in ("start", "attention"):
            assert xl[sheet].freeze_panes == "C3", sheet  # title rows and the token labels stay in view


def test_tab_colours_group_the_tabs(wb):
    path, _, lay, xl = wb
    for ws in xl.worksheets:
        color = ws.sheet_properties.tabColor
        assert color is not None, ws.title
        group = tab_group(ws.title)
        if ws.title in lay.param_sheets():
            assert group == "params"
        elif ws.title in lay.data_sheets():
            assert group == "data"
        assert color.rgb[-6:] == TAB_COLORS[group], ws.title


def test_colour_scales_are_valid_and_cheap(wb):
    """Colour scales are conditional formats over valid ranges (no per-cell styles), on activations and attention."""
    path, _, lay, _ = wb
    xml = sheet_xml(path)
    for sheet, text in xml.items():
        for sqref in re.findall(r'<conditionalFormatting sqref="([^"]+)"', text):
            for part in sqref.split():
                m = re.fullmatch(r"([A-Z]{1,3})([0-9]+)(?::([A-Z]{1,3})([0-9]+))?", part)
                assert m, (sheet, part)
                c1, r1 = col_number(m.group(1)), int(m.group(2))
                c2, r2 = (col_number(m.group(3)), int(m.group(4))) if m.group(3) else (c1, r1)
                assert 1 <= r1 <= r2 <= MAX_ROWS and 1 <= c1 <= c2 <= MAX_COLS, (sheet, part)
    for i in range(lay.L):
        block = xml[f"block_{i}"]
        assert block.count("<colorScale>") >= 11 + lay.H  # activations (3 colours) and every head's weights
        assert block.count('<cfvo type="num" val="0"/>') >= 11
    assert xml["embeddings"].count("<colorScale>") == 3
    assert xml["attention"].count("<colorScale>") == lay.L * lay.H


def test_templates_keep_their_format():
    """tabs.toml and start.md load; start.md documents its own format."""
    assert "start" in templates() and "block" in templates()
    assert "[[answer]]" in template_text("start.md")
