"""The docs' pictures: `python -m xlgpt.docs` renders tabs to PNG with LibreOffice and poppler, and
docs/walkthrough.md shows pictures that exist and stay commit-sized."""
from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny
from xlgpt import docs
from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.xlsx.writer import write_book

ROOT = Path(__file__).resolve().parent.parent
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"


def have_tools() -> bool:
    try:
        docs.find_tools()
    except Exception:
        return False
    return True


needs_tools = pytest.mark.skipif(not have_tools(), reason="needs LibreOffice (soffice) and poppler (pdftoppm)")


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, colour type, the inflated image data) of a PNG, checking every chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"{path}: bad CRC in {kind!r}"
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    assert depth == 8
    return w, h, ctype, zlib.decompress(idat)


def test_png_writer_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img = np.full((40, 70, 3), 255, np.uint8)
    img[5:20, 10:60] = (90, 138, 198)
    img[25:35, :] = rng.integers(0, 256, (10, 70, 3), dtype=np.uint8)  # more colours than a palette holds
    path = tmp_path / "x.png"
    docs.write_png(path, img)
    w, h, ctype, raw = read_png(path)
    assert (w, h, ctype) == (70, 40, 3) and len(raw) == h * (w + 1)


def test_print_copy_shows_only_the_chosen_tabs(tmp_path):
    path = tmp_path / "tiny.xlsx"
    build_tiny(path, "tiny:layers=1,heads=1,embd=8,merges=8", prompt="ab", context=4, live_tokenizer=False)
    copy = tmp_path / "copy.xlsx"
    shown = docs.print_copy(path, copy, {"prediction": ((1, 1, 20, 10), True), "block_0": ((1, 1, 30, 12), False)})
    assert shown == ["block_0", "prediction"]  # tab order
    with zipfile.ZipFile(copy) as z:
        wb = z.read("xl/workbook.xml").decode()
        parts = dict(docs._sheet_parts(z))
        block = z.read(parts["block_0"]).decode()
    hidden = re.findall(r'<sheet name="([^"]+)"[^>]*state="hidden"', wb)
    assert "start" in hidden and "prediction" not in hidden and "block_0" not in hidden
    assert re.search(r"<definedName name=\"_xlnm.Print_Area\" localSheetId=\"\d+\">'prediction'!\$A\$1:\$J\$20<", wb)
    assert '<pageSetUpPr fitToPage="1"/>' in block and 'fitToWidth="1" fitToHeight="1"' in block
    assert 'orientation="portrait"' in block and '<printOptions gridLines="1" headings="1"/>' in block


@needs_tools
def test_render_a_tab(tmp_path):
    """LibreOffice renders the prediction tab (its chart and its colours) of a small workbook to a real PNG."""
    path = tmp_path / "tiny.xlsx"
    model = load_model("tiny:layers=1,heads=2,embd=8,merges=16")
    book = build_book(model, BuildOptions(prompt="ab", context=4, live_tokenizer=False))
    write_book(book, path)
    shot = next(s for s in docs.SHOTS if s.name == "prediction")
    lines = []
    out = docs.render(path, book, [shot], tmp_path / "img", echo=lines.append)
    assert out == [tmp_path / "img" / "prediction.png"]
    w, h, ctype, raw = read_png(out[0])
    size = out[0].stat().st_size
    assert 10_000 < size <= docs.MAX_BYTES and w > 400 and h > 150, (size, w, h)
    if ctype == 3:  # palette indices: more than white and black were drawn
        idx = np.frombuffer(raw, np.uint8).reshape(h, w + 1)[:, 1:]
        assert len(np.unique(idx)) > 8
    assert any("prediction.png" in ln for ln in lines)


def test_walkthrough_pictures_exist_and_are_small():
    text = WALKTHROUGH.read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\((img/[^)]+\.png)\)", text)
    assert len(pictures) >= 12
    for rel in pictures:
        p = WALKTHROUGH.parent / rel
        assert p.exists(), f"{rel} is missing: python -m xlgpt.docs"
        assert p.stat().st_size <= docs.MAX_BYTES, f"{rel} is over {docs.MAX_BYTES} bytes"
        read_png(p)
    # every picture the script makes is used, and the doc says how to regenerate them
    assert {f"img/{s.name}.png" for s in docs.SHOTS} <= set(pictures)
    assert "python -m xlgpt.docs" in text


def test_docs_cli_lists_the_pictures(capsys):
    assert docs.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(s.name in out for s in docs.SHOTS)


def test_unknown_picture_is_an_error(capsys):
    assert docs.main(["--only", "no_such_picture", "--out", "/nonexistent"]) == 1
    assert "no picture named no_such_picture" in capsys.readouterr().err
