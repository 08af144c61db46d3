"""Gnumeric (Debian's `gnumeric`) as a recalculation engine, through its GObject bindings.

Gnumeric's library is reached from the system python (python3-gi + gir1.2-gnumeric), not ours, so a
worker script (gnm_worker.py, no xlgpt imports) runs under that python and answers JSON lines, like
the LibreOffice worker. It loads the workbook once; set_cell + recalc re-evaluate it in place (for
generate and a typed prompt). Measured on the default toy workbook (loaded machine): load 2.3 s, each
recalculation 1.4 s, where `ssconvert --recalc in.xlsx out.xlsx` pays 8.5 s per evaluation (load, calculate,
save) and still has to be read back.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

from xlgpt.engines.base import CellError, Session
from xlgpt.engines.refs import parse_cell, parse_range
from xlgpt.engines.xlsxzip import sheet_titles, workbook_root
from xlgpt.errors import XlgptError

INSTALL_HINT = "Gnumeric is not installed: apt-get install gnumeric gir1.2-gnumeric python3-gi"
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gnm_worker.py")
CLOSE_TIMEOUT = 10.0

# Measured with Gnumeric 1.12.55 on this 2-core, 24 GB machine: a 9.7M-cell xlgpt workbook (8.4M weights)
# loads, recalculates and answers in 95 s at 1.5 GB peak, i.e. ~160 bytes and ~10 us per cell. Past
# MAX_CELLS (~6 GB, ~7 min) the workbook is refused before loading; GPT-2 small (~125M cells) would need ~20 GB.
MAX_CELLS = 40_000_000
BYTES_PER_CELL = 160
SECONDS_PER_CELL = 10e-6

# What Gnumeric prints while loading an xlgpt workbook that is not a problem: it ignores colour
# scales, and a chart whose category cells hold formulas without cached values trips a GLib
# assertion in goffice (the chart XML cannot avoid it: its own caches do not help; cached cell
# values do). Dropped when the worker's stderr is shown.
_NOISE = ("Ignoring unhandled conditional format of type 'colorScale'",
          "go_data_vector_get_str: assertion '(int)i < vec->len' failed")


def find_gnm_python() -> str:
    env = os.environ.get("XLGPT_GNM_PYTHON")
    for cand in ([env] if env else []) + ["/usr/bin/python3", shutil.which("python3")]:
        found = cand and (shutil.which(cand) or (cand if os.path.isfile(cand) else None))
        if found:
            return found
    raise XlgptError(INSTALL_HINT)


def count_cells(path: str, limit: int | None = None) -> int:
    """Cells in the workbook's sheets: the <c> elements plus the cells each array formula fills beyond its
    first, counted by streaming the sheet XML out of the zip. Past `limit` it stops and extrapolates from
    the bytes read (a full-size workbook holds ~10 GB of XML)."""
    ref = re.compile(rb'<f t="array" ref="\$?([A-Z]+)\$?([0-9]+)(?::\$?([A-Z]+)\$?([0-9]+))?"')

    def col(letters: bytes) -> int:
        n = 0
        for ch in letters:
            n = n * 26 + ch - 64
        return n

    n = seen = 0
    with zipfile.ZipFile(path) as zf:
        parts = [i for i in zf.infolist() if i.filename.startswith("xl/worksheets/")
                 and i.filename.endswith(".xml") and "/_rels/" not in i.filename]
        total = sum(i.file_size for i in parts)
        for info in parts:
            tail = b""
            with zf.open(info) as f:
                while chunk := f.read(1 << 22):
                    seen += len(chunk)
                    buf = tail + chunk
                    cut = max(0, buf.rfind(b"<"))  # an element split by the chunk waits for the next one
                    body, tail = buf[:cut], buf[cut:]
                    n += body.count(b"<c ") + body.count(b"<c>")
                    for m in ref.finditer(body):
                        if m.group(3):
                            n += (int(m.group(4)) - int(m.group(2)) + 1) * (col(m.group(3)) - col(m.group(1)) + 1) - 1
                    if limit is not None and n > limit:
                        return max(n, int(n * total / max(seen, 1)))
            n += tail.count(b"<c ") + tail.count(b"<c>")
    return n


def check_size(path: str, limit: int = MAX_CELLS) -> int:
    try:
        n = count_cells(path, limit)
    except (zipfile.BadZipFile, OSError) as e:
        raise XlgptError(f"cannot read {path}: {e}") from None
    if n > limit:
        raise XlgptError(
            f"Gnumeric would need about {n * BYTES_PER_CELL / 1e9:,.1f} GB and {n * SECONDS_PER_CELL / 60:,.0f} min "
            f"for {n:,} cells (it takes up to {limit:,}); use --engine ironcalc or libreoffice")
    return n


def _convert(v):
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict) and "error" in v:
        return CellError(v["error"])
    return v


class GnumericSession(Session):
    engine = "gnumeric"

    def __init__(self, path: str, progress: bool = False, max_cells: int | None = None):
        self.path = os.path.abspath(path)
        self.progress = progress
        limit = max_cells if max_cells is not None else int(os.environ.get("XLGPT_GNUMERIC_MAX_CELLS", MAX_CELLS))
        self.n_cells = check_size(self.path, limit)
        self._sheets = sheet_titles(workbook_root(self.path))
        self._pending: list[list] = []
        self._closed = False
        self._proc = None
        python = find_gnm_python()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr = tempfile.TemporaryFile(prefix="xlgpt-gnm-worker-")
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen([python, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._stderr, env=env, text=True, encoding="utf-8", bufsize=1)
        except OSError as e:
            self._stderr.close()
            raise XlgptError(f"cannot start {python} for Gnumeric: {e}; {INSTALL_HINT}") from None
        try:
            hello = self._receive()
            if not hello.get("ok"):
                raise XlgptError(f"{INSTALL_HINT} ({python}: {hello.get('error')}; set XLGPT_GNM_PYTHON)"
                                 if hello.get("missing") else f"the Gnumeric worker failed: {hello.get('error')}")
            self._say(f"Gnumeric: loading {self.path} ({self.n_cells:,} cells)")
            reply = self._call({"cmd": "open", "path": self.path}, what=f"load {self.path}")
        except BaseException:
            self.close()
            raise
        self._sheets = reply.get("sheets") or self._sheets
        self.seconds = dict(reply.get("seconds") or {})
        self.seconds["total_open"] = time.monotonic() - t0
        self._say(f"Gnumeric: loaded and recalculated in {self.seconds['total_open']:.1f} s")

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    # ---- plumbing -------------------------------------------------------------------
    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            lines = self._stderr.read().decode("utf-8", "replace").splitlines()
        except (OSError, ValueError):
            return ""
        text = " ".join(" ".join(ln for ln in lines if ln.strip() and not any(n in ln for n in _NOISE)).split())
        return f" ({text[-600:]})" if text else ""

    def _died(self) -> XlgptError:
        self._proc.wait()
        return XlgptError(f"the Gnumeric worker exited unexpectedly (code {self._proc.returncode}){self._stderr_tail()}")

    def _receive(self) -> dict:
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise self._died()
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line)

    def _call(self, msg: dict, what: str = "") -> dict:
        if self._closed or self._proc is None:
            raise XlgptError("the Gnumeric session is closed")
        try:
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        reply = self._receive()
        if not reply.get("ok"):
            raise XlgptError(f"Gnumeric could not {what or msg.get('cmd')}: {reply.get('error')}")
        return reply

    def _flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            self._call({"cmd": "set", "items": items}, what="set cells")

    def _check_sheet(self, sheet: str) -> None:
        if self._closed:
            raise XlgptError("the Gnumeric session is closed")
        if sheet not in self._sheets:
            raise XlgptError(f"no sheet named {sheet!r} (sheets: {', '.join(self._sheets)})")

    # ---- Session ----------------------------------------------------------------------
    @property
    def sheet_names(self) -> list[str]:
        return list(self._sheets)

    def set_cell(self, sheet, cell, value) -> None:
        self._check_sheet(sheet)
        parse_cell(cell)
        if isinstance(value, str):
            item = [sheet, cell.replace("$", ""), "text", str(value)]
        elif isinstance(value, (bool, np.bool_)):
            item = [sheet, cell.replace("$", ""), "bool", bool(value)]
        elif isinstance(value, (int, float, np.integer, np.floating)):
            item = [sheet, cell.replace("$", ""), "number", float(value)]
        else:
            raise TypeError(f"cannot store a {type(value).__name__} in a cell")
        self._pending.append(item)

    def recalc(self) -> None:
        self._flush()
        self.seconds["calc"] = self._call({"cmd": "calc"}, what="recalculate").get("seconds")

    def read(self, sheet, ref) -> np.ndarray:
        self._check_sheet(sheet)
        r1, c1, r2, c2 = parse_range(ref)
        self._flush()
        rows = self._call({"cmd": "read", "sheet": sheet, "ref": ref.replace("$", "")},
                          what=f"read {sheet}!{ref}")["rows"]
        out = np.empty((r2 - r1 + 1, c2 - c1 + 1), dtype=object)
        if len(rows) != out.shape[0] or any(len(r) != out.shape[1] for r in rows):
            raise XlgptError(f"Gnumeric returned a range of the wrong shape for {sheet}!{ref}")
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                out[i, j] = _convert(v)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                    proc.stdin.write(json.dumps({"cmd": "close"}) + "\n")
                    proc.stdin.flush()
                with contextlib.suppress(Exception):
                    proc.stdin.close()  # EOF: the worker exits even if it missed "close"
                try:
                    proc.wait(CLOSE_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            with contextlib.suppress(Exception):
                proc.stdout.close()
        with contextlib.suppress(Exception):
            self._stderr.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()
