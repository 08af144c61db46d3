"""Gnumeric worker: drives Gnumeric's library through its GObject bindings for xlgpt.

A standalone script for the *system* python (Debian: /usr/bin/python3 with python3-gi and
gir1.2-gnumeric), so it imports nothing from xlgpt and does not use numpy.

Protocol (one JSON object per line each way, as lo_worker.py):

    {"cmd": "open", "path": "/abs/book.xlsx"}  -> {"ok": true, "sheets": [...], "seconds": {...}}
    {"cmd": "set", "items": [[sheet, cell, kind, value], ...]}   kind: "text" | "number" | "bool"
    {"cmd": "calc"}                             -> {"ok": true, "seconds": 0.1}
    {"cmd": "read", "sheet": s, "ref": "A1:B2"} -> {"ok": true, "rows": [[1.0, "t", true, null, {"error": "#N/A"}]]}
    {"cmd": "close"}                            -> {"ok": true}, then the worker exits

Failures reply {"ok": false, "error": "one line"}. The workbook is never saved.
"""
import json
import os
import re
import sys
import time
import traceback
from decimal import Decimal

PROTO = None  # the real stdout; fd 1 is pointed at stderr so nothing Gnumeric prints can break the protocol

_CELL = re.compile(r"^\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")


def send(obj):
    PROTO.write(json.dumps(obj) + "\n")
    PROTO.flush()


def one_line(exc):
    text = str(exc) if isinstance(exc, RuntimeError) and str(exc) else (
        "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__)
    return " ".join(text.split())


def cell_pos(ref):
    """"B3" -> (col 1, row 2), 0-based as Gnumeric counts."""
    m = _CELL.match(ref)
    if not m:
        raise RuntimeError("not a cell reference: %r" % ref)
    col = 0
    for ch in m.group(1).upper():
        col = col * 26 + ord(ch) - 64
    return col - 1, int(m.group(2)) - 1


class Book:
    def __init__(self):
        import gi
        gi.require_version("Gnm", "1.12")
        gi.require_version("GOffice", "0.10")
        from gi.repository import GOffice, Gnm

        self.Gnm, self.GOffice = Gnm, GOffice
        Gnm.init()
        self.context = Gnm.CmdContextStderr.new()
        Gnm.plugins_init(self.context)
        self.general = GOffice.Format.general()
        self.view = self.book = None
        self.sheets = {}
        T = Gnm.ValueType
        self.types = {T.FLOAT: "float", T.STRING: "str", T.BOOLEAN: "bool", T.ERROR: "error", T.EMPTY: "empty"}

    def load(self, path):
        io = self.GOffice.IOContext.new(self.context)
        view = self.Gnm.WorkbookView.new_from_uri(self.GOffice.filename_to_uri(path), None, io, None)
        if view is None:
            raise RuntimeError("Gnumeric could not open %s" % path)
        self.view, self.book = view, view.props.workbook
        self.sheets = {s.props.name: s for s in (self.book.sheet_by_index(i) for i in range(self.book.sheet_count()))}

    def recalc(self):
        self.book.recalc_all()  # every formula, RAND() included: no trust in dependency tracking

    def sheet(self, name):
        try:
            return self.sheets[name]
        except KeyError:
            raise RuntimeError("no sheet named %r (sheets: %s)" % (name, ", ".join(self.sheets)))

    def set_cells(self, items):
        V, T = self.Gnm.Value, self.Gnm.ValueType
        for sheet_name, ref, kind, value in items:
            sheet = self.sheet(sheet_name)
            col, row = cell_pos(ref)
            if kind == "text":
                v = V.new_string(value)  # never parsed: "=1+1" stays text
            elif kind == "number":
                # the exact decimal of the double: Gnumeric computes in long double
                v = V.new_from_string(T.FLOAT, format(Decimal(float(value)), "f"), self.general, False)
            elif kind == "bool":
                v = V.new_bool(bool(value))
            else:
                raise RuntimeError("unknown cell kind %r" % kind)
            if v is None:
                raise RuntimeError("Gnumeric could not make a value of %r" % (value,))
            sheet.cell_set_value(col, row, v)

    def read(self, sheet_name, ref):
        sheet = self.sheet(sheet_name)
        a, _, b = ref.partition(":")
        c1, r1 = cell_pos(a)
        c2, r2 = cell_pos(b) if b else (c1, r1)
        types, get = self.types, sheet.cell_get
        rows = []
        for r in range(r1, r2 + 1):
            row = []
            for c in range(c1, c2 + 1):
                cell = get(c, r)
                v = cell.value if cell is not None else None
                kind = types.get(v.type_of()) if v is not None else "empty"
                if kind == "float":
                    row.append(float(v.get_as_string()))  # the long double's digits, rounded to a double
                elif kind == "str":
                    row.append(v.get_as_string())
                elif kind == "bool":
                    row.append(v.get_as_checked_bool())
                elif kind == "error":
                    row.append({"error": v.get_as_string()})
                elif kind == "empty":
                    row.append(None)
                else:
                    raise RuntimeError("%s!%s holds an array or a range, not a value" % (sheet_name, ref))
            rows.append(row)
        return rows


def main():
    global PROTO
    PROTO = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        book = Book()
    except (ImportError, ValueError) as e:  # no gi, or gi without the Gnm typelib
        send({"ok": False, "error": one_line(e), "missing": "gnm"})
        return 4
    send({"ok": True, "hello": "gnm_worker", "python": sys.version.split()[0]})
    for line in sys.stdin:  # EOF (the parent closed us or died): exit
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            if cmd == "open":
                t0 = time.monotonic()
                book.load(msg["path"])
                t1 = time.monotonic()
                book.recalc()
                send({"ok": True, "sheets": list(book.sheets),
                      "seconds": {"load": t1 - t0, "calc": time.monotonic() - t1}})
            elif cmd == "set":
                book.set_cells(msg["items"])
                send({"ok": True})
            elif cmd == "calc":
                t0 = time.monotonic()
                book.recalc()
                send({"ok": True, "seconds": time.monotonic() - t0})
            elif cmd == "read":
                send({"ok": True, "rows": book.read(msg["sheet"], msg["ref"])})
            elif cmd == "close":
                send({"ok": True})
                return 0
            else:
                send({"ok": False, "error": "unknown command %r" % cmd})
        except Exception as e:  # report, keep serving
            if not isinstance(e, RuntimeError):
                traceback.print_exc(file=sys.stderr)
            send({"ok": False, "error": one_line(e)})
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # skip freeing a big workbook cell by cell: the process ends anyway
