"""verify cannot be fooled: every formula cell is checked, so any mutant that changes a value fails it."""
from __future__ import annotations

import json
import random
import re
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import needs_libreoffice
from xlgpt.contract import T, expand
from xlgpt.errors import XlgptError
from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.verify import report, verify
from xlgpt.xlsx.book import NOVALUE, Formula
from xlgpt.xlsx.writer import write_book

SPEC = "tiny:layers=2,heads=2,embd=8,merges=64"


def options(**kw) -> BuildOptions:
    return BuildOptions(prompt="Mike is quick.", context=12, live_tokenizer=False, temperature=0.8, sample_top_k=5,
                        seed=0.3, top_k=4, **kw)


@pytest.fixture(scope="module")
def model():
    return load_model(SPEC)


def wrap(text: str) -> str:
    """The generic perturbation: numbers move a little, texts gain a character, booleans become numbers."""
    body = text[1:] if text.startswith("=") else text
    return f'=IFERROR(({body})*1.0001+0.0001,({body})&"~")'


def semantic(text: str) -> list[str]:
    """Mutants a careless edit of GPT-2 would make, where they apply to this formula."""
    out = []
    if "SQRT(" in text and "+0.00001" in text:
        out.append(text.replace("+0.00001", "+0.000001"))  # epsilon
    m = re.search(r"/SQRT\((\d+)\)", text)
    if m:
        out.append(text.replace(m.group(0), f"/SQRT({int(m.group(1)) + 1})"))  # the attention scale
    m = re.search(r"\+(h\d+_\w+_b)$", text)
    if m:
        out.append(text[:m.start()])  # a dropped bias
    if "TRANSPOSE(positions)<=positions" in text:
        out.append(text.replace("TRANSPOSE(positions)<=positions", "TRANSPOSE(positions)<=positions+1"))  # mask off by one
    return out


def mutants(book, rng: random.Random):
    """(description, sheet, cell or array) covering every tab and every defined range, plus semantic ones."""
    seen = set()
    formulas = {}
    for ws in book.sheets:
        for (r, c), (v, style) in ws.cells.items():
            if isinstance(v, Formula):
                formulas.setdefault(ws.name, []).append(("cell", (r, c)))
        for k, af in enumerate(ws.arrays):
            formulas.setdefault(ws.name, []).append(("array", k))
    picks = []
    for sheet, items in formulas.items():  # at least one per tab
        picks.append((sheet, rng.choice(items)))
    for name, r in book.names.items():  # and one per defined range that holds formulas
        inside = [it for it in formulas.get(r.sheet, []) if _inside(book, r.sheet, it, r)]
        if inside:
            picks.append((r.sheet, rng.choice(inside)))
    for sheet, it in picks:
        if (sheet, it) not in seen:
            seen.add((sheet, it))
            yield f"{sheet} {it} perturbed", sheet, it, wrap
    for sheet, items in formulas.items():  # semantic mutants
        for it in items:
            text = _text(book, sheet, it)
            for k, new in enumerate(semantic(text)):
                yield f"{sheet} {it} semantic {k}: {new[:60]}", sheet, it, (lambda _t, new=new: new)
    # the softmax of one head: its row sums of exp off (one array formula, found by its first cell)
    cell = book.names[T.block_attn_sum_h(1, 0)].cell(0)
    yield "softmax row sums of one head", cell.sheet, ("cell_array", (cell.r1, cell.c1)), wrap


def _inside(book, sheet, it, r) -> bool:
    kind, key = it
    if kind == "cell":
        row, col = key
        return r.r1 <= row <= r.r2 and r.c1 <= col <= r.c2
    a = book.sheet(sheet).arrays[key].rng
    return not (a.r2 < r.r1 or a.r1 > r.r2 or a.c2 < r.c1 or a.c1 > r.c2)


def _text(book, sheet, it) -> str:
    ws = book.sheet(sheet)
    kind, key = it
    return ws.cells[key][0].text if kind == "cell" else ws.arrays[key].text


def mutate(book, sheet, it, change) -> None:
    ws = book.sheet(sheet)
    kind, key = it
    if kind == "cell":
        v, style = ws.cells[key]
        ws.cells[key] = (Formula(change(v.text), v.value), style)
    elif kind == "array":
        ws.arrays[key].text = change(ws.arrays[key].text)
    else:  # one cell of a one-cell array formula, found by position
        af = next(a for a in ws.arrays if (a.rng.r1, a.rng.c1) == key)
        af.text = change(af.text)


def test_verify_passes_the_unmutated_book(tmp_path, model):
    path = tmp_path / "good.xlsx"
    write_book(build_book(model, options()), path)
    text, ok = report(verify(path, "ironcalc"))
    assert ok, text


def test_every_mutant_fails_verify(tmp_path, model):
    """Each mutant of a formula cell (every tab, every defined range, labels and texts included) fails."""
    rng = random.Random(0)
    book = build_book(model, options())
    caught, missed = 0, []
    for k, (what, sheet, it, change) in enumerate(list(mutants(book, rng))):
        bad = build_book(model, options())
        mutate(bad, sheet, it, change)
        path = tmp_path / f"m{k}.xlsx"
        write_book(bad, path)
        result = verify(path, "ironcalc")
        if result.ok:
            missed.append(what)
        else:
            caught += 1
    assert not missed, f"{len(missed)} of {caught + len(missed)} mutants passed verify: {missed[:10]}"
    assert caught >= len(book.names) // 2


def _zip_edit(src, dst, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item, edit(item.filename, zin.read(item)))


def test_a_removed_defined_name_fails(tmp_path, model):
    path, bad = tmp_path / "good.xlsx", tmp_path / "bad.xlsx"
    write_book(build_book(model, options()), path)

    def drop(name, data):
        if name == "xl/workbook.xml":
            data = re.sub(rb'<definedName name="block_1_mlp_gelu"[^<]*</definedName>', b"", data)
        return data
    _zip_edit(path, bad, drop)
    text, ok = report(verify(bad, "ironcalc"))
    assert not ok and "defined name 'block_1_mlp_gelu' is missing" in text, text


def test_an_added_formula_fails(tmp_path, model):
    book = build_book(model, options())
    book.sheet("ln_f").formula(1, 30, "=1+1")  # no expectation
    path = tmp_path / "extra.xlsx"
    write_book(book, path)
    text, ok = report(verify(path, "ironcalc"))
    assert not ok and "ln_f!AD1 has a formula nobody expects" in text, text


def test_a_workbook_without_configuration_is_refused(tmp_path, model):
    path, bad = tmp_path / "good.xlsx", tmp_path / "bad.xlsx"
    write_book(build_book(model, options()), path)
    _zip_edit(path, bad, lambda name, data: re.sub(rb'<definedName name="n_layer"[^<]*</definedName>', b"", data)
              if name == "xl/workbook.xml" else data)
    with pytest.raises(XlgptError, match="does not state its configuration"):
        verify(bad, "ironcalc")


@pytest.mark.parametrize("live", [False, True], ids=["python-tokenizer", "live-tokenizer"])
def test_every_formula_states_its_value(model, live):
    opts = options()
    opts.live_tokenizer = live
    missing = [(sheet, rng.a1) for sheet, rng, want in build_book(model, opts).formula_cells()
               if any(v is NOVALUE for v in want.ravel())]
    assert not missing, f"{len(missing)} formulas without an expected value, e.g. {missing[:5]}"


def test_the_contract_lists_exactly_the_names_the_builder_defines(model):
    for live in (False, True):
        opts = options()
        opts.live_tokenizer = live
        book = build_book(model, opts)
        groups = {"param", "config", "input", "model", "tokenizer" if live else "python_tokens"}
        want = set(expand(model.config.n_layer, model.config.n_head, groups))
        assert set(book.names) == want, (sorted(set(book.names) - want), sorted(want - set(book.names)))


# ---- a checkpoint in the hub's original layout with epsilon 1e-3 -------------------------------------------
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """Keys without the `transformer.` prefix and `h.N.attn.bias` buffers, as the hub's own gpt2 file has."""
    from xlgpt.tokenizer import Tokenizer

    from test_reference import random_hf_model

    tok = Tokenizer.gpt2().cut(100)
    hf = random_hf_model(tok, seed=1, n_layer=2, n_head=2, n_embd=16, n_positions=16, layer_norm_epsilon=1e-3)
    cfg = hf.config
    folder = tmp_path_factory.mktemp("hub")
    tensors = {k[len("transformer."):]: v.numpy().copy() for k, v in hf.state_dict().items()
               if k.startswith("transformer.")}
    for i in range(cfg.n_layer):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((16, 16), dtype=np.float32))[None, None]
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    tok.save(folder)
    return folder, hf


def test_hub_layout_epsilon_workbook_equals_transformers(tmp_path, hub_folder):
    folder, hf = hub_folder
    model = load_model(str(folder))
    assert model.config.layer_norm_epsilon == 1e-3
    prompt = "Mike is quick. He"
    ids = model.tokenizer.encode(prompt)
    path = tmp_path / "hub.xlsx"
    write_book(build_book(model, BuildOptions(prompt=prompt, context=16, live_tokenizer=False)), path)
    result = verify(path, "ironcalc")
    text, ok = report(result)
    assert ok, text
    with torch.no_grad():
        logits = hf.double()(torch.tensor([ids])).logits[0, -1].numpy()
    from xlgpt.recalc import open_book

    with open_book(path, "ironcalc") as wb:
        sheet = wb.numbers("lm_head_logits").ravel()
    assert np.max(np.abs(sheet - logits)) < 1e-5 * max(1, np.max(np.abs(logits)))  # float32 weights as written
    assert result.next_token_id == int(np.argmax(logits))


@pytest.mark.parametrize("engine", ["formulas", pytest.param("libreoffice", marks=needs_libreoffice)])
def test_hub_layout_epsilon_workbook_verifies_in_other_engines(tmp_path, hub_folder, engine):
    folder, _ = hub_folder
    path = tmp_path / "hub.xlsx"
    write_book(build_book(load_model(str(folder)), BuildOptions(prompt="Mike is quick. He", context=16,
                                                                 live_tokenizer=False)), path)
    text, ok = report(verify(path, engine))
    assert ok, text
