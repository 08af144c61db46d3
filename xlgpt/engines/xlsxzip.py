"""Cheap facts read straight from the .xlsx zip, without loading the workbook (it may be 800 MB)."""
from __future__ import annotations

import zipfile
from xml.etree import ElementTree as ET

from xlgpt.errors import XlgptError


def workbook_part(zf: zipfile.ZipFile) -> str:
    """Path of the workbook part inside the zip (normally xl/workbook.xml)."""
    try:
        rels = ET.fromstring(zf.read("_rels/.rels"))
        for rel in rels:
            if rel.get("Type", "").endswith("/officeDocument"):
                target = rel.get("Target", "").lstrip("/")
                if target in zf.namelist():
                    return target
    except (KeyError, ET.ParseError):
        pass
    return "xl/workbook.xml"


def workbook_root(path: str) -> ET.Element:
    """The parsed workbook part; XlgptError if the file is not a readable .xlsx."""
    try:
        with zipfile.ZipFile(path) as zf:
            return ET.fromstring(zf.read(workbook_part(zf)))
    except FileNotFoundError:
        raise XlgptError(f"workbook not found: {path}") from None
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError) as e:
        raise XlgptError(f"not a readable .xlsx workbook: {path} ({e})") from None


def sheet_titles(root: ET.Element) -> list[str]:
    return [el.get("name") for el in root.iter() if el.tag.split("}")[-1] == "sheet" and el.get("name")]
