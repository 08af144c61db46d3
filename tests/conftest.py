"""Shared fixtures: tiny workbooks built once per test session."""
from __future__ import annotations

import shutil

import pytest

from xlgpt.model import load_model
from xlgpt.stages import BuildOptions, build_book
from xlgpt.xlsx.writer import write_book


def have_libreoffice() -> bool:
    return shutil.which("soffice") is not None


needs_libreoffice = pytest.mark.skipif(not have_libreoffice(), reason="LibreOffice is not installed")


def have_gnumeric() -> bool:
    """Debian's gnumeric with its GObject bindings for the system python (what .ci/run installs)."""
    import glob

    return bool(glob.glob("/usr/lib/*/girepository-1.0/Gnm-*.typelib")) and shutil.which("ssconvert") is not None


needs_gnumeric = pytest.mark.skipif(not have_gnumeric(), reason="Gnumeric (gnumeric, gir1.2-gnumeric) is not installed")

# the engines that recalculate the test workbooks after edits (formulas has its own, smaller books: its load cost)
ENGINES = ["ironcalc", pytest.param("libreoffice", marks=needs_libreoffice),
           pytest.param("gnumeric", marks=needs_gnumeric)]


def build_tiny(path, spec="tiny", prompt="Mike is quick. He moves", **opts):
    model = load_model(spec)
    options = BuildOptions(prompt=prompt, **opts)
    write_book(build_book(model, options), path)
    return model, options


@pytest.fixture(autouse=True, scope="session")
def _private_snapshot_cache(tmp_path_factory):
    """IronCalc snapshots of big test workbooks go to a temporary folder, not the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XLGPT_CACHE_DIR", str(tmp_path_factory.mktemp("xlgpt-cache")))
    yield
    mp.undo()
