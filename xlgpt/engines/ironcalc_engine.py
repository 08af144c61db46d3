"""IronCalc (Rust, in-process): the default engine. Loads GPT-2 small from the .xlsx in ~90 s, from its
snapshot in ~10 s, and recalculates it in ~15 s (bench/RESULTS.md)."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time

import numpy as np

from xlgpt.engines.base import CellError, Session
from xlgpt.engines import snapshot as snapshots
from xlgpt.engines.refs import parse_cell, parse_range
from xlgpt.errors import XlgptError

# IronCalc's xlsx importer prints one line per formula cell without a cached value or with an
# odd type attribute ("Unexpected type (empty) in Sheet!A1"), to stdout. Harmless: dropped.
_NOISE = re.compile(rb"^(Unexpected|Invalid) type \(.*\) in .*!\$?[A-Z]+\$?[0-9]+\s*$")
_MAX_FORWARDED_LINES = 50


@contextlib.contextmanager
def _filtered_native_output():
    """Point fds 1 and 2 at a temporary file while native code runs, then forward to stderr
    whatever is not IronCalc's per-cell noise. A file, not a pipe: the native call may hold
    the GIL, and a full pipe would then block it forever."""
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no fd 1/2 to redirect: nothing to filter
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    tmp = tempfile.TemporaryFile(prefix="xlgpt-ironcalc-")
    try:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        tmp.seek(0)
        kept = 0
        for line in tmp:
            if _NOISE.match(line):
                continue
            if kept < _MAX_FORWARDED_LINES:
                sys.stderr.write(line.decode("utf-8", "replace"))
            kept += 1
        if kept > _MAX_FORWARDED_LINES:
            sys.stderr.write(f"(IronCalc printed {kept - _MAX_FORWARDED_LINES} more lines)\n")
    finally:
        tmp.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class IronCalcSession(Session):
    engine = "ironcalc"

    def __init__(self, path: str, progress: bool = False, snapshot: bool = True):
        """snapshot: reload a big workbook from IronCalc's own format when this exact file was loaded
        before, and save that snapshot on its first load (engines/snapshot.py)."""
        try:
            import ironcalc
        except ImportError as e:  # pragma: no cover - a dependency of xlgpt
            raise XlgptError(f"IronCalc is not installed: pip install ironcalc ({e})") from None
        self.path = path
        self.progress = progress
        self._CellType = ironcalc.CellType
        self._model = None
        self.loaded_from = "xlsx"
        t0 = time.monotonic()
        found = snapshots.locate(path) if snapshot and snapshots.wanted(path) else None
        snap, digest = found if found else (None, "")
        if snap is not None and snap.is_file():
            why = snapshots.check(snap, digest)
            if why:  # corrupted, foreign or from another version: rebuilt from the workbook below
                print(f"IronCalc: discarded the snapshot {snap} ({why}); loading {path}", file=sys.stderr, flush=True)
                snapshots.discard(snap)
            else:
                self._say(f"IronCalc: loading {path} from its snapshot {snap}")
                self._model = self._load(lambda: ironcalc.load_from_icalc(str(snap)), quiet_failure=True)
            if self._model is None:  # unreadable (e.g. a half-copied cache): parse the workbook instead
                snapshots.discard(snap)
            else:
                self.loaded_from = "snapshot"
                snapshots.touch(snap)
        if self._model is None:
            self._say(f"IronCalc: loading {path}")
            self._model = self._load(lambda: ironcalc.load_from_xlsx(path, "en", "UTC"))
        t1 = time.monotonic()
        self.seconds = {"load": t1 - t0}
        if snap is not None and self.loaded_from == "xlsx":  # before any recalculation or edit
            why = snapshots.save(self._model, snap, digest)
            self.seconds["snapshot"] = time.monotonic() - t1
            # always said: it puts a file as big as the workbook in the user's cache
            print(f"IronCalc: {why}" if why else
                  f"IronCalc: saved a snapshot in {self.seconds['snapshot']:.1f} s; loading this workbook again "
                  f"reads {snap} (--no-snapshot to skip)", file=sys.stderr, flush=True)
        self._sheets = {p["name"]: i for i, p in enumerate(self._model.get_worksheets_properties())}
        self._say(f"IronCalc: loaded in {t1 - t0:.1f} s, recalculating")
        self.recalc()
        self.seconds["calc"] = self._last_calc
        self._say(f"IronCalc: recalculated in {self._last_calc:.1f} s")

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def _load(self, load, quiet_failure: bool = False):
        try:
            with _filtered_native_output():
                return load()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # WorkbookError, or a Rust panic (PanicException is a BaseException)
            if quiet_failure:
                return None
            raise XlgptError(f"IronCalc could not load {self.path}: {_one_line(e)}") from None

    @property
    def sheet_names(self) -> list[str]:
        return list(self._sheets)

    def _sheet(self, name: str) -> int:
        if self._model is None:
            raise XlgptError("the IronCalc session is closed")
        try:
            return self._sheets[name]
        except KeyError:
            raise XlgptError(f"no sheet named {name!r} (sheets: {', '.join(self._sheets)})") from None

    def set_cell(self, sheet, cell, value) -> None:
        idx = self._sheet(sheet)
        row, col = parse_cell(cell)
        m = self._model
        try:
            if isinstance(value, str):
                m.update_cell_with_text(idx, row, col, value)
            elif isinstance(value, (bool, np.bool_)):
                m.update_cell_with_bool(idx, row, col, bool(value))
            elif isinstance(value, (int, float, np.integer, np.floating)):
                m.update_cell_with_number(idx, row, col, float(value))
            else:
                raise TypeError(f"cannot store a {type(value).__name__} in a cell")
        except (TypeError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            raise XlgptError(f"IronCalc could not set {sheet}!{cell}: {_one_line(e)}") from None

    def recalc(self) -> None:
        if self._model is None:
            raise XlgptError("the IronCalc session is closed")
        t0 = time.monotonic()
        try:
            with _filtered_native_output():
                self._model.evaluate()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            raise XlgptError(f"IronCalc failed to recalculate {self.path}: {_one_line(e)}") from None
        self._last_calc = time.monotonic() - t0

    def read(self, sheet, ref) -> np.ndarray:
        idx = self._sheet(sheet)
        r1, c1, r2, c2 = parse_range(ref)
        get = self._model.get_cell_value
        get_type = self._model.get_cell_type
        error_type = self._CellType.ErrorValue
        out = np.empty((r2 - r1 + 1, c2 - c1 + 1), dtype=object)
        for i, r in enumerate(range(r1, r2 + 1)):
            row = out[i]
            for j, c in enumerate(range(c1, c2 + 1)):
                v = get(idx, r, c)
                if isinstance(v, str):
                    # errors come back as their text ("#N/A"); the type tells them from text
                    if v.startswith("#") and get_type(idx, r, c) == error_type:
                        v = CellError(v)
                elif isinstance(v, bool) or v is None:
                    pass
                else:
                    v = float(v)
                row[j] = v
        return out

    def close(self) -> None:
        self._model = None
