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
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

from xlgpt.engines.base import WorkerSession
from xlgpt.engines.xlsxzip import count_cells, sheet_titles, workbook_root
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


class GnumericSession(WorkerSession):
    engine = "gnumeric"
    label = "Gnumeric"

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
