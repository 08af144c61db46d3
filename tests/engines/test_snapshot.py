"""IronCalc snapshots: a reload from the snapshot computes exactly what a load of the .xlsx computes,
an edited workbook never meets a stale snapshot, and a broken snapshot falls back to the workbook."""
from __future__ import annotations

import json
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


def _flip_middle(path, n=64):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


def test_corrupted_snapshot_is_discarded_and_rebuilt(book, cache, capsys):
    expected = recalc(book, "ironcalc", snapshot=False)
    recalc(book, "ironcalc")  # saves the snapshot
    snap = snapshot.snapshot_path(str(book))
    assert snap.is_file() and snapshot.record_path(snap).is_file()
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)  # the cache folder is the user's alone
    capsys.readouterr()
    _flip_middle(snap)
    assert recalc(book, "ironcalc") == expected  # not the corrupted model's answer
    err = capsys.readouterr().err
    assert "discarded the snapshot" in err and "checksum does not match" in err
    assert len([line for line in err.splitlines() if "discarded" in line]) == 1
    assert snapshot.check(snap, snapshot.locate(str(book))[1]) is None  # rebuilt: trusted again


def test_snapshot_of_another_version_or_workbook_is_not_trusted(book, cache):
    recalc(book, "ironcalc")
    snap, digest = snapshot.locate(str(book))
    rec_path = snapshot.record_path(snap)
    good = rec_path.read_text()
    for field in ("format", "xlgpt", "ironcalc", "workbook_sha256", "bytes"):
        rec = json.loads(good)
        rec[field] = 0
        rec_path.write_text(json.dumps(rec))
        assert f"made for {field}" in snapshot.check(snap, digest)
    rec_path.write_text(good)
    assert snapshot.check(snap, digest) is None
    assert "made for workbook_sha256" in snapshot.check(snap, "0" * 64)  # a copy under another workbook's key


def test_snapshot_without_record_or_not_owned_is_not_trusted(book, cache, monkeypatch, capsys):
    recalc(book, "ironcalc")
    snap = snapshot.snapshot_path(str(book))
    digest = snapshot.locate(str(book))[1]
    assert snapshot.check(snap, digest) is None
    me = os.getuid()
    monkeypatch.setattr(snapshot.os, "getuid", lambda: me + 1)
    assert "not a folder of yours" in snapshot.check(snap, digest)
    monkeypatch.setattr(snapshot.os, "getuid", lambda: me)
    os.chmod(cache, 0o755)  # a folder others can read is made private again
    assert snapshot.check(snap, digest) is None and cache.stat().st_mode & 0o077 == 0
    snapshot.record_path(snap).unlink()
    assert "no record" in snapshot.check(snap, digest)
