"""The bar chart of the top-k next-token probabilities: a valid chart part that openpyxl and LibreOffice read."""
from __future__ import annotations

import shutil
import subprocess
import zipfile
from xml.etree import ElementTree as ET

import openpyxl
import pytest

from conftest import needs_libreoffice
from inside import shared_book, tmpdir
from xlgpt.engines.lo_worker import REGISTRY
from xlgpt.engines.libreoffice import find_soffice
from xlgpt.xlsx.book import BarChart, Book, Range, Style
from xlgpt.xlsx.writer import write_book

C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
PKG = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def sheet_part(z: zipfile.ZipFile, name: str) -> str:
    wb = ET.fromstring(z.read("xl/workbook.xml"))
    rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rid = next(s.get("{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id")
               for s in wb.iter(f"{ns}sheet") if s.get("name") == name)
    return "xl/" + next(r.get("Target") for r in rels.iter(f"{PKG}Relationship") if r.get("Id") == rid)


def test_chart_parts():
    path, model, opts = shared_book()
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"xl/charts/chart1.xml", "xl/drawings/drawing1.xml", "xl/drawings/_rels/drawing1.xml.rels"} <= names
        types = z.read("[Content_Types].xml").decode()
        assert "/xl/charts/chart1.xml" in types and "drawingml.chart+xml" in types and "drawing+xml" in types
        part = sheet_part(z, "prediction")
        rels = part.replace("worksheets/", "worksheets/_rels/") + ".rels"
        assert "drawings/drawing1.xml" in z.read(rels).decode()
        assert b"<drawing r:id=" in z.read(part)
        chart = ET.fromstring(z.read("xl/charts/chart1.xml"))  # well-formed
        bar = chart.find(f".//{C}barChart")
        assert bar.find(f"{C}barDir").get("val") == "bar"
        cat = bar.find(f".//{C}cat//{C}f").text
        val = bar.find(f".//{C}val//{C}f").text
        for ET_ in (ET.fromstring(z.read("xl/drawings/drawing1.xml")),):
            assert ET_.find(".//{http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing}twoCellAnchor") is not None
    from xlgpt.engines import defined_names

    dn = defined_names(path)
    assert cat.replace("$", "") == f"{dn['top_tokens'][0]}!{dn['top_tokens'][1]}"
    assert val.replace("$", "") == f"{dn['top_probs'][0]}!{dn['top_probs'][1]}"
    wb = openpyxl.load_workbook(path)  # openpyxl reads the chart back
    charts = wb["prediction"]._charts
    assert len(charts) == 1 and charts[0].tagname == "barChart"
    assert len(charts[0].series) == 1


@needs_libreoffice
def test_libreoffice_renders_the_chart():
    """LibreOffice opens a file with the writer's chart, recalculates it and draws the chart: its title and the
    category labels (computed by formulas) are in the exported PDF."""
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed")
    book = Book()
    ws = book.sheet("prediction")
    words = ["alpha", "bravo", "charlie", "delta", "echo"]
    for i, w in enumerate(words):
        ws.write(2 + i, 1, w)
        ws.formula(2 + i, 2, f'=UPPER(A{2 + i})&"!"')
        ws.formula(2 + i, 3, f"={0.4 - 0.07 * i}*1", Style(num_fmt="0.00%"))
    ws.charts.append(BarChart("next-token probabilities, top 5", categories=Range("prediction", 2, 2, 6, 2),
                              values=Range("prediction", 2, 3, 6, 3), anchor=(8, 1), size=(6, 16)))
    d = tmpdir() / "lo-chart"
    d.mkdir()
    path = d / "chart.xlsx"
    write_book(book, path)
    assert len(openpyxl.load_workbook(path)["prediction"]._charts) == 1
    profile = d / "profile"
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(REGISTRY)  # recalculate on load
    p = subprocess.run([find_soffice(), f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
                        "--convert-to", "pdf", "--outdir", str(d), str(path)], capture_output=True, text=True, timeout=180)
    pdf = d / "chart.pdf"
    assert p.returncode == 0 and pdf.is_file(), p.stderr
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=60).stdout
    assert "next-token probabilities, top 5" in text  # the chart's title (no cell says it)
    assert text.count("ALPHA!") == 2  # the cell and the chart's category axis
    assert "40%" in text  # the value axis, formatted as a percentage
