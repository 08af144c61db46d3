"""IronCalc snapshots: a big workbook parsed once is reloaded from IronCalc's own format.

Parsing the XML is most of IronCalc's cost at full size (GPT-2 small: ~90 s to load the .xlsx, ~10 s to
load the same model saved with `save_to_icalc`, bench/NOTES.md). The first load of a big workbook saves
the freshly loaded model (before any recalculation or edit) under the cache folder, keyed by the
workbook's SHA-256 and the IronCalc version, so an edited or rebuilt workbook never meets a stale
snapshot. Only the newest KEEP snapshots are kept: each is about as big as the workbook.

A snapshot is trusted only if `check` passes: next to `<key>.icalc` lies `<key>.json` with the snapshot's
SHA-256 and size, the xlgpt and IronCalc versions that wrote it and the workbook's full SHA-256, and all of
them match; the snapshot, its record and the cache folder belong to the user, and the folder is theirs
alone (created 0700). Anything else (a flipped byte, a copied file, another version) is discarded and
rebuilt from the .xlsx: a snapshot is only ever a faster way to load the same workbook.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

MIN_BYTES = 64 << 20  # smaller workbooks load in seconds: not worth a snapshot
KEEP = 2
FORMAT = 1  # of the .json record


def cache_dir() -> Path:
    root = os.environ.get("XLGPT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "xlgpt")
    return Path(root) / f"ironcalc-{_version('ironcalc')}"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover - installed without metadata
        return "unknown"


def wanted(path: str) -> bool:
    try:
        return os.path.getsize(path) >= MIN_BYTES
    except OSError:
        return False


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def locate(path: str) -> tuple[Path, str] | None:
    """(where this exact file's snapshot lives, the file's SHA-256); None if it cannot be read (the load
    will say why)."""
    try:
        digest = _sha256(path)
    except OSError:
        return None
    return cache_dir() / f"{digest[:32]}.icalc", digest


def snapshot_path(path: str) -> Path | None:
    found = locate(path)
    return found[0] if found else None


def record_path(snap: Path) -> Path:
    return snap.with_suffix(".json")


def _mine(st: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


def private_folder(folder: Path, create: bool) -> str | None:
    """Make sure `folder` is the user's alone (creating it 0700 if asked); returns why it is not, or None."""
    if create:
        try:
            folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # .../xlgpt too (its parents: default)
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            return f"cannot create {folder}: {e.strerror or e}"
    try:
        st = os.lstat(folder)
    except OSError as e:
        return f"cannot use {folder}: {e.strerror or e}"
    if not stat.S_ISDIR(st.st_mode) or not _mine(st):
        return f"{folder} is not a folder of yours: its snapshots are not trusted"
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(folder, 0o700)
        except OSError as e:
            return f"cannot make {folder} private: {e.strerror or e}"
    return None


def _record(snap_sha: str, size: int, workbook_sha: str) -> dict:
    return {"format": FORMAT, "xlgpt": _version("xlgpt"), "ironcalc": _version("ironcalc"),
            "workbook_sha256": workbook_sha, "snapshot_sha256": snap_sha, "bytes": size}


def check(snap: Path, workbook_sha: str) -> str | None:
    """Why the snapshot at `snap` must not be loaded for the workbook with this SHA-256, or None."""
    why = private_folder(snap.parent, create=False)
    if why:
        return why
    try:
        st = os.lstat(snap)
        rec_path = record_path(snap)
        rst = os.lstat(rec_path)
    except OSError:
        return "it has no record of its checksum"
    if not (stat.S_ISREG(st.st_mode) and stat.S_ISREG(rst.st_mode)) or not (_mine(st) and _mine(rst)):
        return "it is not a file of yours: not trusted"
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"its record is unreadable ({type(e).__name__})"
    if not isinstance(rec, dict):
        return "its record is unreadable"
    for key, want in _record(rec.get("snapshot_sha256"), st.st_size, workbook_sha).items():
        if key != "snapshot_sha256" and rec.get(key) != want:
            return f"it was made for {key} {rec.get(key)!r}, not {want!r}"
    try:
        if _sha256(snap) != rec.get("snapshot_sha256"):
            return "its checksum does not match (the file is corrupted)"
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    return None


def save(model, target: Path, workbook_sha: str) -> str | None:
    """Save `model` at `target` with its record (atomically); prune old snapshots. Returns why it failed,
    or None."""
    why = private_folder(target.parent, create=True)
    if why:
        return why
    tmp = target.parent / f".{target.stem}.{os.getpid()}.tmp"  # IronCalc refuses to overwrite a file
    rec_tmp = target.parent / f".{target.stem}.{os.getpid()}.json.tmp"
    remove(tmp)
    try:
        model.save_to_icalc(str(tmp))
        os.chmod(tmp, 0o600)
        rec = _record(_sha256(tmp), os.path.getsize(tmp), workbook_sha)
        with open(os.open(rec_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            json.dump(rec, f)
        remove(record_path(target))  # never a new snapshot with an old record
        os.replace(tmp, target)
        os.replace(rec_tmp, record_path(target))
    except (KeyboardInterrupt, SystemExit):
        remove(tmp)
        remove(rec_tmp)
        raise
    except BaseException as e:  # OSError, WorkbookError or a Rust panic
        remove(tmp)
        remove(rec_tmp)
        return f"cannot save an IronCalc snapshot: {' '.join(str(e).split()) or type(e).__name__}"
    prune(target.parent)
    return None


def prune(folder: Path, keep: int = KEEP) -> None:
    """Remove all but the `keep` most recently used snapshots (loading one touches it)."""
    def used(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # removed meanwhile by another xlgpt
            return 0.0

    for old in sorted(folder.glob("*.icalc"), key=used, reverse=True)[keep:]:
        discard(old)


def discard(snap: Path) -> None:
    remove(snap)
    remove(record_path(snap))


def touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def remove(path) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
