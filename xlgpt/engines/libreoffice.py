"""LibreOffice (headless, over UNO) as a recalculation engine.

LibreOffice's python bridge (`uno`) lives in the system python (Debian: python3-uno for
/usr/bin/python3), not in ours, so a worker script (lo_worker.py, no xlgpt imports) runs
under that python, starts soffice with a fresh temporary profile and answers JSON lines.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from xlgpt.engines.base import WorkerSession
from xlgpt.engines.xlsxzip import sheet_titles, workbook_root
from xlgpt.errors import XlgptError

INSTALL_HINT = "LibreOffice is not installed: apt-get install libreoffice-calc-nogui python3-uno"
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lo_worker.py")
START_TIMEOUT = 90.0  # seconds for soffice to accept the UNO connection
CLOSE_TIMEOUT = 10.0

_SOFFICE_CANDIDATES = (
    "/usr/bin/soffice",
    "/usr/lib/libreoffice/program/soffice",
    "/opt/libreoffice/program/soffice",
    "/Applications/LibreOffice.app/Contents/MacOS/soffice",
)


def find_soffice() -> str:
    env = os.environ.get("XLGPT_SOFFICE")
    if env:
        found = shutil.which(env) or (env if os.path.isfile(env) else None)
        if not found:
            raise XlgptError(f"XLGPT_SOFFICE={env} does not exist; {INSTALL_HINT}")
        return found
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found:
            return found
    for cand in _SOFFICE_CANDIDATES:
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise XlgptError(INSTALL_HINT)


def find_uno_python(soffice: str) -> str:
    env = os.environ.get("XLGPT_UNO_PYTHON")
    if env:
        found = shutil.which(env) or (env if os.path.isfile(env) else None)
        if not found:
            raise XlgptError(f"XLGPT_UNO_PYTHON={env} does not exist; {INSTALL_HINT}")
        return found
    # official LibreOffice builds bundle a python with uno next to soffice
    program = os.path.dirname(os.path.realpath(soffice))
    for name in ("python", "python.bin", "python3"):
        cand = os.path.join(program, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    for cand in ("/usr/bin/python3", shutil.which("python3")):
        if cand and os.path.isfile(cand):
            return cand
    raise XlgptError(INSTALL_HINT)


_LIVE: "weakref.WeakSet[LibreOfficeSession]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for s in list(_LIVE):
        s.close()


def _pipe_files(pipe: str | None, profile: str | None) -> list[str]:
    """The unix sockets a SIGKILLed soffice leaves in /tmp: our UNO pipe and its single-instance
    pipe, named after the MD5 of the profile URL in UTF-16 (hex digits without zero padding)."""
    names = [f"*_{pipe}"] if pipe else []
    if profile:
        digest = hashlib.md5(Path(profile).as_uri().encode("utf-16-le")).digest()
        names.append("*_SingleOfficeIPC_" + "".join(f"{b:x}" for b in digest))
    return [f for n in names for f in glob.glob(f"/tmp/OSL_PIPE_{n}")]


class LibreOfficeSession(WorkerSession):
    engine = "libreoffice"
    label = "LibreOffice"

    def __init__(self, path: str, progress: bool = False):
        self.path = os.path.abspath(path)
        self.progress = progress
        self._proc = None
        self._soffice_pid = None
        self.profile = None
        self._pipe = None
        self._pending: list[list] = []
        self._closed = False
        self._lock = threading.Lock()
        soffice = find_soffice()
        python = find_uno_python(soffice)
        self._sheets = sheet_titles(workbook_root(self.path))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        program = os.path.dirname(os.path.realpath(soffice))
        if os.path.isfile(os.path.join(program, "uno.py")):
            env["PYTHONPATH"] = program  # LibreOffice builds that ship uno.py in program/
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr = tempfile.TemporaryFile(prefix="xlgpt-lo-worker-")
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                [python, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                env=env, text=True, encoding="utf-8", bufsize=1,
            )
        except OSError as e:
            self._stderr.close()
            raise XlgptError(f"cannot start {python} for LibreOffice: {e}; {INSTALL_HINT}") from None
        _LIVE.add(self)
        try:
            hello = self._receive()
            if not hello.get("ok"):
                if hello.get("missing") == "uno":
                    raise XlgptError(f"{INSTALL_HINT} ({python} cannot import uno; set XLGPT_UNO_PYTHON)")
                raise XlgptError(f"LibreOffice worker failed: {hello.get('error')}")
            if progress:
                print(f"LibreOffice: starting {soffice} and loading {self.path}", file=sys.stderr, flush=True)
            reply = self._call({"cmd": "open", "path": self.path, "soffice": soffice,
                                "start_timeout": START_TIMEOUT}, what=f"load {self.path}")
        except BaseException:
            self.close()
            raise
        self._soffice_pid = reply.get("soffice_pid")
        self.profile = reply.get("profile")
        self._pipe = reply.get("pipe")
        self._sheets = reply.get("sheets") or self._sheets
        self.seconds = dict(reply.get("seconds") or {})
        self.seconds["total_open"] = time.monotonic() - t0
        if progress:
            print(f"LibreOffice: ready in {self.seconds['total_open']:.1f} s", file=sys.stderr, flush=True)

    # ---- plumbing -------------------------------------------------------------------
    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-600:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        text = " ".join(text.split())
        return f" ({text})" if text else ""

    def _receive(self) -> dict:
        while True:
            line = self._proc.stdout.readline()
            if not line:
                self._proc.wait()
                raise XlgptError(f"the LibreOffice worker exited unexpectedly (code {self._proc.returncode})"
                                 f"{self._stderr_tail()}")
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue  # not ours (should not happen: the worker guards its stdout)
            if "progress" in msg and "ok" not in msg:
                if self.progress:
                    print(f"LibreOffice: {msg['progress']}", file=sys.stderr, flush=True)
                continue
            return msg

    def _call(self, msg: dict, what: str = "") -> dict:
        if self._closed or self._proc is None:
            raise XlgptError("the LibreOffice session is closed")
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(msg) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._proc.wait()
                raise XlgptError(f"the LibreOffice worker exited unexpectedly (code {self._proc.returncode})"
                                 f"{self._stderr_tail()}") from None
            reply = self._receive()
        if not reply.get("ok"):
            raise XlgptError(f"LibreOffice could not {what or msg.get('cmd')}: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "close"}) + "\n")
                    proc.stdin.flush()
                except (BrokenPipeError, OSError, ValueError):
                    pass
                with contextlib.suppress(Exception):
                    proc.stdin.close()  # EOF: the worker cleans up even if it missed "close"
                try:
                    proc.wait(CLOSE_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    stream.close()
        # the worker kills soffice's process group itself; if it did not end cleanly, do it here
        if self._soffice_pid and (proc is None or proc.returncode != 0):
            with contextlib.suppress(Exception):
                os.killpg(self._soffice_pid, signal.SIGKILL)
            for stale in _pipe_files(self._pipe, self.profile):
                with contextlib.suppress(OSError):
                    os.unlink(stale)
            if self.profile:
                shutil.rmtree(self.profile, ignore_errors=True)
        with contextlib.suppress(Exception):
            self._stderr.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

