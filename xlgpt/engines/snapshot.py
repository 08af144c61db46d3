"""IronCalc snapshots: a big workbook parsed once is reloaded from IronCalc's own format.

Parsing the XML is most of IronCalc's cost at full size (GPT-2 small: ~90 s to load the .xlsx, ~10 s to
load the same model saved with `save_to_icalc`, bench/NOTES.md). The first load of a big workbook saves
the freshly loaded model (before any recalculation or edit) under the cache folder, keyed by the
workbook's SHA-256 and the IronCalc version, so an edited or rebuilt workbook never meets a stale
snapshot. Only the newest KEEP snapshots are kept: each is about as big as the workbook.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

MIN_BYTES = 64 << 20  # smaller workbooks load in seconds: not worth a snapshot
KEEP = 2


def cache_dir() -> Path:
    root = os.environ.get("XLGPT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "xlgpt")
    return Path(root) / f"ironcalc-{_ironcalc_version()}"


def _ironcalc_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ironcalc")
    except PackageNotFoundError:  # pragma: no cover - installed without metadata
        return "unknown"


def wanted(path: str) -> bool:
    try:
        return os.path.getsize(path) >= MIN_BYTES
    except OSError:
        return False


def snapshot_path(path: str) -> Path | None:
    """Where this exact file's snapshot lives; None if the file cannot be read (the load will say why)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    except OSError:
        return None
    return cache_dir() / f"{digest.hexdigest()[:32]}.icalc"


def save(model, target: Path) -> str | None:
    """Save `model` at `target` (atomically); prune old snapshots. Returns why it failed, or None."""
    tmp = target.parent / f".{target.stem}.{os.getpid()}.tmp"  # IronCalc refuses to overwrite a file
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot write to {target.parent}: {e.strerror or e}"
    remove(tmp)
    try:
        model.save_to_icalc(str(tmp))
        os.replace(tmp, target)
    except (KeyboardInterrupt, SystemExit):
        remove(tmp)
        raise
    except BaseException as e:  # OSError, WorkbookError or a Rust panic
        remove(tmp)
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
        remove(old)


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
