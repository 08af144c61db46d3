"""LibreOffice worker: drives one headless LibreOffice over UNO for xlgpt.

This file is a standalone script. It runs under the *system* python (the one
that has LibreOffice's ``uno`` module, e.g. /usr/bin/python3), so it imports
nothing from xlgpt and does not use numpy.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

    {"cmd": "open", "path": "/abs/book.xlsx", "soffice": "soffice", "start_timeout": 60}
        -> {"ok": true, "sheets": [...], "soffice_pid": 123, "seconds": {...}}
    {"cmd": "set", "items": [[sheet, cell, kind, value], ...]}   kind: "text" | "number" | "bool"
        -> {"ok": true}
    {"cmd": "calc"}                        -> {"ok": true, "seconds": 0.1}
    {"cmd": "read", "sheet": s, "ref": "A1:B2"}
        -> {"ok": true, "rows": [[1.0, "text", true, null, {"error": "#N/A"}], ...]}
    {"cmd": "close"}                       -> {"ok": true}, then the worker exits

Before the reply to "open" the worker may send {"progress": "..."} lines.
Failures reply {"ok": false, "error": "one line"}. On stdin EOF, on close and when
the parent process disappears, the worker kills LibreOffice (its whole process
group) and deletes the temporary profile. The workbook is never saved.
"""
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
import traceback
import uuid

PROTO = None  # the real stdout; fd 1 is pointed at stderr so stray prints cannot break the protocol

REGISTRY = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="UseOpenCL" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="FirstRun" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Save/Document"><prop oor:name="AutoSave" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Recovery/AutoSave"><prop oor:name="Enabled" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Recovery/RecoveryInfo"><prop oor:name="Enabled" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""

# LibreOffice FormulaError codes -> the Excel error value (as LibreOffice exports them)
ERROR_CODES = {
    502: "#NUM!",  # IllegalArgument
    503: "#NUM!",  # IllegalFPOperation
    504: "#VALUE!",  # IllegalParameter
    519: "#VALUE!",  # NoValue
    521: "#NULL!",  # NoCode
    523: "#NUM!",  # NoConvergence
    524: "#REF!",  # NoRef
    525: "#NAME?",  # NoName
    526: "#NAME?",  # NoAddin
    527: "#NAME?",  # NoMacro
    532: "#DIV/0!",  # DivisionByZero
    32767: "#N/A",  # NotAvailable
}

FORMULA_RESULT_ERROR = 4  # com.sun.star.sheet.FormulaResult.ERROR
NUMBER_FORMAT_LOGICAL = 1024  # com.sun.star.util.NumberFormat.LOGICAL


def send(obj):
    PROTO.write(json.dumps(obj) + "\n")
    PROTO.flush()


def one_line(exc):
    if isinstance(exc, RuntimeError) and str(exc):
        text = str(exc)  # our own messages
    else:
        text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return " ".join(text.split())


class Office:
    def __init__(self):
        self.proc = None
        self.profile = None
        self.profile_url = None
        self.pipe_name = None
        self.log_path = None
        self.desktop = None
        self.doc = None
        self.sheets = {}
        self.logical_keys = {}
        self.lock = threading.RLock()
        self.closed = False
        self.stopping_thread = None

    # ---- start / stop -------------------------------------------------------------
    def start(self, soffice, timeout):
        import uno
        from com.sun.star.connection import NoConnectException

        self.profile = tempfile.mkdtemp(prefix="xlgpt-lo-")
        self.profile_url = uno.systemPathToFileUrl(self.profile)
        user = os.path.join(self.profile, "user")
        os.makedirs(user)
        with open(os.path.join(user, "registrymodifications.xcu"), "w", encoding="utf-8") as f:
            f.write(REGISTRY)
        tmp = os.path.join(self.profile, "tmp")
        os.makedirs(tmp)
        self.pipe_name = "xlgpt_%d_%s" % (os.getpid(), uuid.uuid4().hex[:12])
        self.log_path = os.path.join(self.profile, "soffice.log")
        env = dict(os.environ)
        env["TMPDIR"] = tmp  # LibreOffice's own temp files vanish with the profile
        for k in ("PYTHONHOME", "PYTHONPATH"):
            env.pop(k, None)
        args = [
            soffice, "--headless", "--invisible", "--norestore", "--nologo",
            "--nofirststartwizard", "--nodefault", "--nolockcheck",
            "-env:UserInstallation=" + self.profile_url,
            "--accept=pipe,name=%s;urp;StarOffice.ComponentContext" % self.pipe_name,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env,
            )
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext(
            "com.sun.star.bridge.UnoUrlResolver", local)
        url = "uno:pipe,name=%s;urp;StarOffice.ComponentContext" % self.pipe_name
        deadline = time.monotonic() + timeout
        while True:
            try:
                ctx = resolver.resolve(url)
                break
            except NoConnectException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("soffice exited with code %s before accepting a connection%s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("soffice did not accept a connection within %g s%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.1)
        self.desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-400:].decode("utf-8", "replace")
        except OSError:
            return ""
        text = " ".join(text.split())
        return " (soffice said: %s)" % text if text else ""

    def load(self, path):
        import uno
        from com.sun.star.beans import PropertyValue

        def prop(name, value):
            p = PropertyValue()
            p.Name, p.Value = name, value
            return p

        props = (
            prop("Hidden", True),
            prop("ReadOnly", True),
            prop("MacroExecutionMode", 0),  # NEVER_EXECUTE
            prop("UpdateDocMode", 0),  # NO_UPDATE (external links)
        )
        doc = self.desktop.loadComponentFromURL(uno.systemPathToFileUrl(path), "_blank", 0, props)
        if doc is None or not hasattr(doc, "getSheets"):
            if doc is not None:
                doc.close(True)
            raise RuntimeError("LibreOffice could not open %s as a spreadsheet" % path)
        self.doc = doc
        sheets = doc.getSheets()
        self.sheets = {name: sheets.getByName(name) for name in sheets.getElementNames()}

    def stop(self):
        """Kill LibreOffice and delete the profile. Several threads may call this (stdin EOF,
        the parent watchdog, a signal): all of them return only once the cleanup is done."""
        if self.stopping_thread == threading.get_ident():
            return  # re-entered from a signal handler in the thread that is cleaning up
        with self.lock:
            if self.closed:
                return
            self.stopping_thread = threading.get_ident()
            try:
                self._stop()
            finally:
                self.closed = True

    def _stop(self):
        proc = self.proc
        if proc is not None and proc.poll() is None:
            # Never save: the workbook can be huge. Ask LibreOffice to quit, then kill the group.
            if self.desktop is not None:
                t = threading.Thread(target=self._terminate_quietly, daemon=True)
                t.start()
                t.join(2.0)
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # oosplash + soffice.bin, whatever is left
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        for stale in self.pipe_files():
            try:
                os.unlink(stale)
            except OSError:
                pass
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    def pipe_files(self):
        """Unix sockets a killed soffice leaves in /tmp: our UNO pipe, and the single-instance
        pipe named after the MD5 of the profile URL in UTF-16 (hex digits, no zero padding)."""
        patterns = []
        if self.pipe_name:
            patterns.append("*_" + self.pipe_name)
        if self.profile_url:
            digest = hashlib.md5(self.profile_url.encode("utf-16-le")).digest()
            patterns.append("*_SingleOfficeIPC_" + "".join("%x" % b for b in digest))
        return [f for p in patterns for f in glob.glob("/tmp/OSL_PIPE_" + p)]

    def _terminate_quietly(self):
        try:
            if self.doc is not None:
                self.doc.setModified(False)
            self.desktop.terminate()
        except Exception:
            pass

    # ---- cells ----------------------------------------------------------------------
    def sheet(self, name):
        try:
            return self.sheets[name]
        except KeyError:
            raise RuntimeError("no sheet named %r (sheets: %s)" % (name, ", ".join(self.sheets)))

    def set_cells(self, items):
        for sheet_name, ref, kind, value in items:
            cell = self.sheet(sheet_name).getCellRangeByName(ref)
            if kind == "text":
                cell.setString(value)  # never setFormula: "=1+1" stays text
            elif kind == "number":
                cell.setValue(float(value))
            elif kind == "bool":
                cell.setValue(1.0 if value else 0.0)
                cell.setPropertyValue("NumberFormat", self.logical_format())
            else:
                raise RuntimeError("unknown cell kind %r" % kind)

    def logical_format(self):
        from com.sun.star.lang import Locale
        return self.doc.getNumberFormats().getStandardFormat(NUMBER_FORMAT_LOGICAL, Locale())

    def is_logical(self, key):
        if key not in self.logical_keys:
            try:
                t = self.doc.getNumberFormats().getByKey(key).getPropertyValue("Type")
                self.logical_keys[key] = bool(t & NUMBER_FORMAT_LOGICAL)
            except Exception:
                self.logical_keys[key] = False
        return self.logical_keys[key]

    def read(self, sheet_name, ref):
        sheet = self.sheet(sheet_name)
        rng = sheet.getCellRangeByName(ref)
        rows = [list(r) for r in rng.getDataArray()]  # one UNO call for all values
        a = rng.getRangeAddress()
        r0, c0 = a.StartRow, a.StartColumn

        def cells(ranges):
            for b in ranges.getRangeAddresses():
                for r in range(b.StartRow, b.EndRow + 1):
                    for c in range(b.StartColumn, b.EndColumn + 1):
                        yield r, c

        for r, c in cells(rng.queryEmptyCells()):
            rows[r - r0][c - c0] = None
        for r, c in cells(rng.queryFormulaCells(FORMULA_RESULT_ERROR)):
            code = sheet.getCellByPosition(c, r).getError()
            rows[r - r0][c - c0] = {"error": ERROR_CODES.get(code, "Err:%d" % code)}
        groups = rng.getUniqueCellFormatRanges()
        for i in range(groups.getCount()):
            group = groups.getByIndex(i)
            if self.is_logical(group.getPropertyValue("NumberFormat")):
                for r, c in cells(group):
                    v = rows[r - r0][c - c0]
                    # LibreOffice has no boolean type: TRUE is 1 shown in a boolean format, and
                    # formulas inherit that format (=MAX(bool, 3) shows 3): only 0 and 1 are booleans
                    if isinstance(v, float) and v in (0.0, 1.0):
                        rows[r - r0][c - c0] = v == 1.0
        return rows


def watch_parent(office, ppid):
    while True:
        time.sleep(0.5)
        if os.getppid() != ppid:
            office.stop()
            os._exit(3)


def main():
    global PROTO
    PROTO = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        import uno  # noqa: F401
    except ImportError as e:
        send({"ok": False, "error": "python-uno missing: %s" % e, "missing": "uno"})
        return 4
    office = Office()
    threading.Thread(target=watch_parent, args=(office, os.getppid()), daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business: it closes us
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (office.stop(), os._exit(5)))
    send({"ok": True, "hello": "lo_worker", "python": sys.version.split()[0]})
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                cmd = msg.get("cmd")
                if cmd == "open":
                    t0 = time.monotonic()
                    office.start(msg.get("soffice") or "soffice", float(msg.get("start_timeout", 60)))
                    t1 = time.monotonic()
                    send({"progress": "LibreOffice started in %.1f s, loading the workbook" % (t1 - t0)})
                    office.load(msg["path"])
                    t2 = time.monotonic()
                    send({"progress": "loaded in %.1f s, recalculating" % (t2 - t1)})
                    office.doc.calculateAll()
                    t3 = time.monotonic()
                    send({"ok": True, "sheets": list(office.sheets), "soffice_pid": office.proc.pid,
                          "profile": office.profile, "pipe": office.pipe_name,
                          "seconds": {"start": t1 - t0, "load": t2 - t1, "calc": t3 - t2}})
                elif cmd == "set":
                    office.set_cells(msg["items"])
                    send({"ok": True})
                elif cmd == "calc":
                    t0 = time.monotonic()
                    if msg.get("all"):
                        office.doc.calculateAll()
                    else:
                        office.doc.calculate()
                    send({"ok": True, "seconds": time.monotonic() - t0})
                elif cmd == "read":
                    send({"ok": True, "rows": office.read(msg["sheet"], msg["ref"])})
                elif cmd == "close":
                    office.stop()
                    send({"ok": True})
                    return 0
                else:
                    send({"ok": False, "error": "unknown command %r" % cmd})
            except Exception as e:  # report, keep serving
                if not isinstance(e, RuntimeError):
                    traceback.print_exc(file=sys.stderr)
                send({"ok": False, "error": one_line(e)})
    finally:
        office.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
