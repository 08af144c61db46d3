"""A build interrupted while its worker processes write the weights (SIGINT to the process group as Ctrl-C
sends it, SIGTERM and SIGHUP to xlgpt as `timeout` and a closed terminal send them): one line, exit 128 +
the signal, no traceback from any process, no temporary file, the old output untouched, no process left.
And workers die with their parent even when it is killed without a chance to clean up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xlgpt.xlsx.writer import PROCESS_MIN_CELLS

ROOT = Path(__file__).resolve().parents[1]
# ~28M weight cells: above PROCESS_MIN_CELLS, so the writer forks its workers; seconds of writing to interrupt
BIG = "tiny:layers=4,embd=768,heads=4"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes are forked on Linux")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_build(tmp_path: Path) -> tuple[subprocess.Popen, list[int], Path]:
    out = tmp_path / "out.xlsx"
    out.write_bytes(b"the previous workbook")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLGPT_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "xlgpt", "build", "--model", BIG, "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        kids = [k for k in _children(proc.pid) if _alive(k)]
        if len(kids) >= 2:  # the workers are writing
            return proc, kids, out
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the build never started its worker processes: {proc.communicate()[1].decode()[-500:]}")


def test_the_build_is_big_enough_for_workers():
    from xlgpt.model import load_model

    assert load_model(BIG).config.n_params >= PROCESS_MIN_CELLS


@pytest.mark.parametrize("sig,group", [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, False)],
                         ids=["SIGINT-to-group", "SIGTERM", "SIGHUP"])
def test_interrupted_build(tmp_path, sig, group):
    proc, kids, out = _start_build(tmp_path)
    if group:
        os.killpg(proc.pid, sig)  # Ctrl-C: the terminal signals every process of the group
    else:
        os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    err = stderr.decode()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err + stdout.decode()
    assert err.splitlines() == [f"xlgpt: interrupted by {signal.Signals(sig).name}"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]  # no .part file
    assert out.read_bytes() == b"the previous workbook"
    time.sleep(0.2)
    assert not [k for k in kids if _alive(k)], "worker processes are left"


def test_workers_die_with_a_killed_parent(tmp_path):
    proc, kids, _ = _start_build(tmp_path)
    proc.kill()  # SIGKILL: no handler runs; the kernel ends the workers (PR_SET_PDEATHSIG)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    assert not [k for k in kids if _alive(k)], "worker processes outlived their parent"
