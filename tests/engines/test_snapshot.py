"""IronCalc snapshots: a reload from the snapshot computes exactly what a load of the .xlsx computes,
an edited workbook never meets a stale snapshot, and a broken snapshot falls back to the workbook."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.conftest import build_tiny
from xlgpt.cli import main
from xlgpt.engines import open_workbook, snapshot
from xlgpt.recalc import recalc


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "tiny.xlsx"
    build_tiny(path, prompt="one two", seed=0.5)  # a pinned draw instead of RAND(): reproducible values
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XLGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(snapshot, "MIN_BYTES", 0)  # tiny workbooks too
    return snapshot.cache_dir()


def _values(path):
    with open_workbook(path, "ironcalc") as s:
        return s.loaded_from, [s.read(name, "A1:AZ80") for name in s.sheet_names]


def test_reload_from_snapshot_equals_xlsx(book, cache, capsys):
    first = _values(book)
    assert "saved a snapshot" in capsys.readouterr().err
    assert first[0] == "xlsx" and len(list(cache.glob("*.icalc"))) == 1
    second = _values(book)
    assert second[0] == "snapshot"
    for a, b in zip(first[1], second[1]):
        assert a.shape == b.shape and all(x == y for x, y in zip(a.ravel(), b.ravel()))
    # a new prompt typed in after a snapshot load is tokenized and predicted like after an xlsx load
    via_snapshot = recalc(book, "ironcalc", prompt="three four five")
    via_xlsx = recalc(book, "ironcalc", prompt="three four five", snapshot=False)
    assert via_snapshot == via_xlsx and "".join(via_snapshot["tokens"]) == "three four five"


def test_edited_workbook_gets_its_own_snapshot(book, tmp_path, cache):
    path = tmp_path / "t.xlsx"
    shutil.copy(book, path)
    a = recalc(path, "ironcalc")
    build_tiny(path, prompt="six")  # same path, other bytes
    b = recalc(path, "ironcalc")
    assert "".join(a["tokens"]) == "one two" and "".join(b["tokens"]) == "six"
    assert len(list(cache.glob("*.icalc"))) == 2


def test_broken_snapshot_falls_back_to_the_workbook(book, cache):
    snap = snapshot.snapshot_path(str(book))
    snap.parent.mkdir(parents=True)
    snap.write_bytes(b"not a snapshot")
    with open_workbook(book, "ironcalc") as s:
        assert s.loaded_from == "xlsx"
    assert snap.stat().st_size > 100  # replaced by a good one
    with open_workbook(book, "ironcalc") as s:
        assert s.loaded_from == "snapshot"


def test_no_snapshot_for_small_workbooks_or_when_asked(book, tmp_path, monkeypatch):
    monkeypatch.setenv("XLGPT_CACHE_DIR", str(tmp_path / "cache"))
    assert book.stat().st_size < snapshot.MIN_BYTES
    with open_workbook(book, "ironcalc") as s:
        assert s.loaded_from == "xlsx"
    monkeypatch.setattr(snapshot, "MIN_BYTES", 0)
    assert main(["recalc", str(book), "--no-snapshot"]) == 0
    assert not (tmp_path / "cache").exists()


def test_only_the_newest_snapshots_are_kept(tmp_path):
    for i in range(4):
        p = tmp_path / f"{i}.icalc"
        p.write_bytes(b"x")
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
    snapshot.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.icalc")) == ["2.icalc", "3.icalc"]
