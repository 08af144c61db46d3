"""Cheap facts read straight from the .xlsx zip, without loading the workbook (it may be 800 MB): the xlsx
package's readers, with its error as the application's one-line error."""
from __future__ import annotations

from xml.etree import ElementTree as ET

from xlgpt.errors import XlgptError
from xlgpt.xlsx import reader
from xlgpt.xlsx.reader import sheet_titles, workbook_part  # noqa: F401  (re-exported for the engines)


def workbook_root(path: str) -> ET.Element:
    """The parsed workbook part; XlgptError if the file is not a readable .xlsx."""
    try:
        return reader.workbook_root(path)
    except reader.XlsxError as e:
        raise XlgptError(str(e)) from None
