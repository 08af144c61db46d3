"""The workbook as a graph of compiled `formulas` functions, evaluated in dependency order.

`formulas.ExcelModel` makes a schedula node of every cell and every range, and its dispatcher pays for each
on every calculation (~1 ms and ~5 KB a cell: the default workbook's 290k tokenizer cells never finish).
Here each formula is still parsed and compiled by `formulas` (its Parser, its compiled function graph, its
function implementations, its way of shaping a result into the cell or array range), but:
- a formula is compiled once per pattern: formulas whose texts are equal once every reference and defined name
  is a placeholder (repeats of one reference kept apart from different ones) share one compiled function,
  called with their own input ranges, and numbers are parameters too where formulas keeps each in a node of
  its own (133 compilations for the default workbook's 30,630 formulas);
- the compiled functions are called in their order without schedula's per-call bookkeeping, and a formula that
  is IF(one condition, x, y) skips the branch it does not take where that provably changes nothing (Compiled);
- an array formula is one node whose result fills its range;
- values live in one object grid per sheet, so an input range is a slice, not an assembly of cell nodes, and a
  range goes in as its values (formulas' Ranges only for the functions that read a reference itself);
- after the first calculation only the formulas downstream of the cells set since (and volatile ones) run.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from xlgpt.engines.formulas_book import SheetData
from xlgpt.engines.refs import col_letters, col_number
from xlgpt.errors import XlgptError

# a string literal or an array constant (kept as they are), an A1 reference with an optional sheet (a cell or a
# cell:cell range), a name, or a number literal
_REF = re.compile(r"""
    "(?:[^"]|"")*" | \{[^{}"]*\}
  | (?<![A-Za-z0-9_.$'!])
    (?P<sheet>(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)!)?
    (?P<a>\$?[A-Za-z]{1,3}\$?[0-9]{1,7})(?::(?P<b>\$?[A-Za-z]{1,3}\$?[0-9]{1,7}))?
    (?![A-Za-z0-9_(.!:])
  | (?<![A-Za-z0-9_.$'!\\])(?P<name>[A-Za-z_\\][A-Za-z0-9_.]*)(?![A-Za-z0-9_.(!'])
  | (?<![A-Za-z0-9_.$'!\\-])(?P<num>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.(!:'])
""", re.X)
_PART = re.compile(r"(\$?)([A-Za-z]{1,3})(\$?)([0-9]{1,7})$")
# formulas that read the position of their own cell, or are volatile
_POSITIONAL = re.compile(r"(?<![A-Za-z0-9_.])(ROW|COLUMN|_XLFN\.SINGLE|SINGLE|OFFSET|INDIRECT)\s*\(|@", re.I)
_VOLATILE = re.compile(r"(?<![A-Za-z0-9_.])(RAND|RANDBETWEEN|NOW|TODAY|OFFSET|INDIRECT)\s*\(", re.I)


def _part(text: str) -> tuple[bool, int, bool, int]:
    """"$B3" -> (column absolute, column 2, row absolute, row 3)."""
    m = _PART.match(text)
    return bool(m.group(1)), col_number(m.group(2)), bool(m.group(3)), int(m.group(4))


def _sheet_title(prefix: str | None) -> str | None:
    if not prefix:
        return None
    s = prefix[:-1]
    if s.startswith("'"):
        s = s[1:-1].replace("''", "'")
    return s.upper()


def shift_formula(text: str, dr: int, dc: int) -> str:
    """A formula as it reads dr rows and dc columns away (relative references move; what a shared formula means)."""
    def part(p: str) -> str:
        ca, c, ra, r = _part(p)
        return f"{'$' if ca else ''}{col_letters(c if ca else c + dc)}{'$' if ra else ''}{r if ra else r + dr}"

    def sub(m):
        if m.group("a") is None:
            return m.group(0)
        out = (m.group("sheet") or "") + part(m.group("a"))
        return out + (":" + part(m.group("b")) if m.group("b") else "")

    return _REF.sub(sub, text)


def _pattern(text: str, sheet: str, names, literals: bool = True):
    """The formula with every reference and defined name replaced by a placeholder (the key shared by formulas
    that differ only in where they read; a repeated reference keeps the placeholder of its first use), its
    references in order as (sheet, r1, c1, r2, c2), its names in order (upper case) and, with literals, its
    number literals (not after a minus sign, nor in an array constant) as placeholders too, in order."""
    refs: list[tuple] = []
    used: list[str] = []
    nums: list[str] = []
    first: dict = {}

    def sub(m):
        num = m.group("num")
        if num is not None:
            if not literals:
                return num
            k = first.setdefault(("num", num), len(nums))
            nums.append(num)
            return f"\2{k}\2"
        name = m.group("name")
        if name is not None:
            if name.upper() not in names:
                return name
            k = first.setdefault(name.upper(), len(used))
            used.append(name.upper())
            return f"\1{k}\1"
        if m.group("a") is None:
            return m.group(0)
        _, c1, _, r1 = _part(m.group("a"))
        _, c2, _, r2 = _part(m.group("b")) if m.group("b") else (0, c1, 0, r1)
        ref = (_sheet_title(m.group("sheet")) or sheet, min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2))
        k = first.setdefault(ref, len(refs))
        refs.append(ref)
        return f"\0{k}{':' if m.group('b') else ''}\0"

    return _REF.sub(sub, text), refs, used, nums


def _number(text: str):
    """A number literal as formulas' parser gives it."""
    return int(text) if text.isdigit() else float(text)


class _OwnCompile(Exception):
    """A formula sharing another cell's compiled function with other literals must fall back to schedula's
    dispatch: it is compiled on its own first."""


# functions that read a reference itself (not its values), or operators that build one: these get formulas'
# Ranges objects; every other formula gets the values (INDEX over values is formulas' own array path, and
# INDEX over a Ranges makes a Ranges object for every cell of the range, ~10 us each, on every call)
_REFERENCE_FUNCS = re.compile(r"(?<![A-Za-z0-9_.])(ISFORMULA|ISREF|AREAS|COLUMNS|ROWS|COLUMN|ROW|SINGLE|_XLFN\.SINGLE|"
                              r"OFFSET|INDIRECT|CELL)\s*\(|@", re.I)
# shapes of formulas' results, for the skipped branch of an IF: elementwise functions (numpy-vectorized, so their
# result has the broadcast shape of their arguments; BYPASS is formulas' copy of a repeated subexpression),
# functions that always give one value, and INDEX with single indexes into a row, a column or both axes
_ELEMENTWISE = {"IF", "IFERROR", "+", "-", "*", "/", "^", "&", "=", "<>", "<", ">", "<=", ">=", "U-", "U+", "%",
                "MOD", "BYPASS"}
_SCALAR = {"MIN", "MAX", "SUM", "AND", "OR", "AVERAGE", "SUMSQ"}
_SHAPED = _ELEMENTWISE | _SCALAR | {"INDEX"}
_FN_KEYS = {"type", "inputs", "outputs", "function", "wait_inputs", "index", "solve_cycle", "extra_inputs"}
_DATA_KEYS = {"type", "wait_inputs", "index", "filters"}


def _base(node_id) -> str:
    """A formulas function node's function: "IF<2>" -> "IF"."""
    return re.sub(r"<\d+>$", "", node_id).upper() if isinstance(node_id, str) else ""


_VERBATIM = object()  # a pattern whose number literals must stay in its key


class Compiled:
    """One formula compiled by formulas (a schedula DispatchPipe) and, when its dispatcher is a plain chain of
    functions, the same functions called in their order without schedula's per-call bookkeeping.

    A formula that is IF(condition, x, y) at its top skips the branch it does not take when the condition is one
    number or logical and the result is provably the same: formulas' IF is elementwise, so its result has the
    broadcast shape of its three arguments, every element from the branch taken. The skipped branch's shape is
    inferred through functions whose result shape is known (elementwise ones, aggregates, INDEX of one cell);
    where it cannot be, both branches run. (A row of the bpe tab that finished merging is
    IF(finished, -1, <a row-wide expression>).)"""

    def __init__(self, func, inputs: list, refs: list, wants_ranges: bool):
        import schedula as sh
        from formulas.tokens.operand import XlError

        self.func = func
        self.inputs = inputs  # per argument: ("ref", index into the formula's references) or ("name", NAME)
        self.refs = refs  # the anchor formula's references (sheet, r1, c1, r2, c2), for its range dicts
        self.wants_ranges = wants_ranges
        self.templates = [None if "name" in i[0] else rng.ranges[0] for i, rng in zip(inputs, func.inputs.values())]
        from formulas.functions import Array, replace_empty
        from formulas.ranges import Ranges

        self._none, self._XlError = sh.NONE, XlError
        self._Array, self._replace_empty, self._Ranges = Array, replace_empty, Ranges
        self.steps = self._chain(func)
        self.lazy = self._lazy_if() if self.steps is not None else None
        self.skipped = 0  # branches skipped, for the tests
        self.literals: list[str] | None = []  # constant nodes a cell sharing the pattern gives its own literals

    @staticmethod
    def _chain(func):
        dsp = func.dsp
        nodes = dsp.nodes
        defaults = {k: v["value"] for k, v in dsp.default_values.items()}
        fns = []
        for k, n in nodes.items():
            if n["type"] == "function":
                if set(n) - _FN_KEYS or len(n["outputs"]) != 1:
                    return None
                fns.append(k)
            elif n["type"] != "data" or set(n) - _DATA_KEYS:
                return None
        known = set(func.inputs) | set(defaults)
        steps, left = [], fns
        while left:
            ready = [k for k in left if all(i in known for i in nodes[k]["inputs"])]
            if not ready:
                return None
            for k in ready:
                n = nodes[k]
                out = n["outputs"][0]
                steps.append((n["function"], n["inputs"], out, nodes[out].get("filters", ()), _base(k)))
                known.add(out)
            left = [k for k in left if k not in ready]
        if func.outputs[0] not in known:
            return None
        return defaults, list(func.inputs), steps, func.outputs[0]

    def _lazy_if(self):
        """(top step, condition, x, y, steps for the condition, {branch: (its steps, the other's steps)})."""
        _, _, steps, out = self.steps
        producer = {st[2]: i for i, st in enumerate(steps)}
        top = producer.get(out)
        if top is None or steps[top][4] != "IF" or len(steps[top][1]) != 3:
            return None

        def need(node, acc):
            i = producer.get(node)
            if i is not None and i not in acc:
                acc.add(i)
                for j in steps[i][1]:
                    need(j, acc)
            return acc

        cond, x, y = steps[top][1]
        nc, nx, ny = need(cond, set()), need(x, set()), need(y, set())
        plans = {}
        for taken, other, nt, no in ((x, y, nx, ny), (y, x, ny, nx)):
            skip = sorted(no - nt - nc)
            if all(steps[i][4] in _SHAPED for i in skip):
                plans[taken] = (sorted(nt - nc), skip, other)
        return (top, cond, x, y, sorted(nc), plans) if plans else None

    def _shape(self, v):
        s = np.shape(v)
        return (1, 1) if s == () else s

    def literal_keys(self, nums: list[str]) -> list[str] | None:
        """The keys of formulas' constant nodes for the formula's distinct number literals, if the compiled
        function takes each of them from its own node (none folded into another constant), else None."""
        if self.steps is None:
            return None
        defaults = self.steps[0]
        distinct = list(dict.fromkeys(nums))
        for u in distinct:
            v = defaults.get(u, None)
            if type(v) is not type(_number(u)) or v != _number(u):
                return None
        for k in defaults:
            if not isinstance(k, str):
                continue
            k = re.sub(r"^c\d+>", "", k)  # formulas' copy of a repeated subexpression
            if k in distinct or k.startswith('"') or re.fullmatch(r"-[0-9.eE+]+", k):
                continue  # a literal, a string, or a negative literal (written after '-': never a placeholder)
            if any(re.search(rf"(?<![0-9.]){re.escape(u)}(?![0-9.])", k) for u in distinct):
                return None  # a constant folded from literals: it would keep the first cell's
        return distinct

    def __call__(self, *args, consts: dict | None = None):
        """The formula's value; consts: values for its number literals' nodes (a cell sharing the pattern)."""
        if consts and self.steps is None:
            raise _OwnCompile
        if self.steps is not None:
            defaults, names, steps, out = self.steps
            values = dict(defaults)
            if consts:
                values.update(consts)
            values.update(zip(names, args))
            try:
                todo = range(len(steps))
                lazy = self.lazy
                if lazy is not None:
                    top, cond, x, y, nc, plans = lazy
                    if not self._run(steps, nc, values):
                        return self._dispatch(args, consts)
                    taken = self._branch(values[cond], x, y)
                    if taken in plans:
                        run, skip, other = plans[taken]
                        if not self._run(steps, run, values):
                            return self._dispatch(args, consts)
                        full = self._full_shape(steps, skip, values, cond, taken, other)
                        if full is not None:
                            self.skipped += 1
                            v = self._broadcast(values[taken], full)
                            for flt in steps[top][3]:
                                v = flt(v)
                            return v
                    done = set(nc) | (set(plans[taken][0]) if taken in plans else set())
                    todo = [i for i in todo if i not in done]
                if self._run(steps, todo, values):
                    return values[out]
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception:
                pass  # let schedula raise or not, as it does in formulas.ExcelModel
        return self._dispatch(args, consts)

    def _dispatch(self, args, consts):
        if consts:
            raise _OwnCompile
        return self.func(*args)

    def _run(self, steps, which, values) -> bool:
        none = self._none
        for i in which:
            fn, ins, o, filters, _ = steps[i]
            v = fn(*[values[k] for k in ins])
            for flt in filters:
                v = flt(v)
            if v is none:
                return False  # schedula would not set the node: let it decide
            values[o] = v
        return True

    def _branch(self, c, x, y):
        """The branch formulas' IF takes for every element when the condition is one plain number or logical."""
        if np.shape(c) not in ((), (1, 1)):
            return None
        e = c[()] if np.ndim(c) == 0 and isinstance(c, np.ndarray) else (c[0, 0] if np.ndim(c) else c)
        if isinstance(e, (str, self._XlError)) or not isinstance(e, (bool, int, float, np.bool_, np.number)):
            return None
        return x if e else y

    def _full_shape(self, steps, skip, values, cond, taken, other):
        """The shape of formulas' IF result (its three arguments broadcast), the skipped branch's shape inferred;
        None if it cannot be."""
        shapes = {}

        def shape_of(k):
            return shapes[k] if k in shapes else self._shape(values[k])

        try:
            for i in skip:
                _, ins, o, _, name = steps[i]
                if name in _SCALAR:
                    shapes[o] = (1, 1)
                elif name == "INDEX":  # inputs: formulas' compiling flag, the array, the indexes
                    if any(shape_of(k) != (1, 1) for k in ins[2:]) or not (
                            len(ins) == 4 or 1 in shape_of(ins[1])):
                        return None
                    shapes[o] = (1, 1)
                else:
                    shapes[o] = np.broadcast_shapes(*(shape_of(k) for k in ins))
            return np.broadcast_shapes(shape_of(cond), shape_of(taken), shape_of(other))
        except (ValueError, KeyError):
            return None

    def _broadcast(self, v, full):
        """What formulas' IF gives when every element takes this branch: its values (empty cells as 0) in an
        Array of the broadcast shape."""
        if isinstance(v, self._Ranges):
            v = v.value
        v = self._replace_empty(np.asarray(v, dtype=object))
        return np.array(np.broadcast_to(v, full), dtype=object).view(self._Array)


@dataclass
class Node:
    sheet: int
    r1: int
    c1: int
    r2: int
    c2: int
    compiled: Compiled
    out: dict  # the formulas range dict of the cell / array range
    args: list  # per argument: (sheet index, r1, c1, r2, c2, range dict or None), or None (an unusable name)
    volatile: bool
    formula: object = None  # its FormulaCell
    consts: dict | None = None  # its number literals, where they differ from those the function was compiled with
    removed: bool = False  # a value was typed over it


def _range_dict(template: dict, r1: int, c1: int, r2: int, c2: int) -> dict:
    """A formulas range dict like template's, for another area."""
    a, b = col_letters(c1), col_letters(c2)
    ref = f"{a}{r1}" if ":" not in template["ref"] else f"{a}{r1}:{b}{r2}"
    prefix = template["name"][:len(template["name"]) - len(template["ref"])]
    return {**template, "r1": str(r1), "r2": str(r2), "n1": c1, "n2": c2, "c1": a, "c2": b, "ref": ref,
            "name": prefix + ref}


class Graph:
    """Every formula of the workbook compiled by `formulas`, and the values of every cell."""

    def __init__(self, sheets: list[SheetData], names: dict[str, str], progress=None):
        import schedula as sh
        from formulas.cell import Cell, format_output
        from formulas.functions import replace_empty
        from formulas.ranges import Ranges
        from formulas.tokens.operand import Error

        self._sh, self._Cell, self._Ranges = sh, Cell, Ranges
        self._format_output, self._replace_empty, self._errors = format_output, replace_empty, Error.errors
        self.titles = [s.title for s in sheets]
        self._index = {t.upper(): i for i, t in enumerate(self.titles)}
        self._names_text = names
        self._names: dict[str, tuple] = {}
        empty = sh.EMPTY
        self.grids = []
        for s in sheets:
            g = np.empty((max(s.rows, 1), max(s.cols, 1)), dtype=object)
            g[:] = empty
            for (r, c), v in s.values.items():
                g[r - 1, c - 1] = v
            self.grids.append(g)
        t0 = time.monotonic()
        self.patterns: dict[tuple, Compiled | None] = {}
        self._out_templates: dict[tuple, dict] = {}
        self.compiled = 0
        self.nodes: list[Node] = []
        for i, s in enumerate(sheets):
            for f in s.formulas:
                self.nodes.append(self._node(i, f))
                if progress and len(self.nodes) % 5000 == 0:
                    progress(f"formulas: compiled {len(self.nodes):,} formulas "
                             f"({self.compiled:,} distinct) in {time.monotonic() - t0:.0f} s")
        self._link()
        self._changed: set[tuple[int, int, int]] = set()
        self._fresh = False

    # ---- compiling --------------------------------------------------------------------------------------------
    def _compile(self, sheet: int, f, refs: list, used: list) -> Compiled:
        upper = self.titles[sheet].upper()
        ctx = {"sheet": upper}
        where = self._where(f)
        try:
            cell = self._Cell(where, "=" + f.text, context=ctx).compile(context=ctx)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            raise XlgptError(f"the formulas engine cannot parse {self.titles[sheet]}!{where} ={f.text}: "
                             f"{' '.join(str(e).split()) or type(e).__name__}") from None
        self.compiled += 1
        func = cell.func.func
        first = {}
        for k, r in enumerate(refs):
            first.setdefault(r, k)
        inputs = []
        for k, rng in func.inputs.items():
            if isinstance(rng, self._Ranges) and len(rng.ranges) == 1:
                d = rng.ranges[0]
                key = (d.get("sheet", upper), int(d["r1"]), d["n1"], int(d["r2"]), d["n2"])
                if key not in first:  # formulas read a reference the pattern did not see
                    refs = refs + [key]
                    first[key] = len(refs) - 1
                    inputs.append(("fixed", first[key]))
                else:
                    inputs.append(("ref", first[key]))
            elif rng is None and isinstance(k, str) and k.upper() in used:
                inputs.append(("name", used.index(k.upper())))
            elif rng is None and isinstance(k, str) and k.upper() in self._names_text:
                inputs.append(("fixed name", k.upper()))
            else:
                raise XlgptError(f"the formulas engine cannot evaluate {self.titles[sheet]}!{where} ={f.text}: "
                                 f"unsupported reference {k}")
        bare = _REF.sub("", f.text)  # without references and strings
        wants = bool(_REFERENCE_FUNCS.search(bare)) or ":" in bare
        return Compiled(func, inputs, refs, wants)

    @staticmethod
    def _where(f) -> str:
        if f.ref is None:
            return f"{col_letters(f.col)}{f.row}"
        r1, c1, r2, c2 = f.ref
        return f"{col_letters(c1)}{r1}:{col_letters(c2)}{r2}"

    def _name_arg(self, name: str):
        if name not in self._names:
            from xlgpt.xlsx.reader import split_sheet_ref
            from xlgpt.engines.refs import parse_range
            target = split_sheet_ref(self._names_text[name])
            if target is None or target[0].upper() not in self._index:
                self._names[name] = None  # a constant or formula name: #NAME?, as a name formulas cannot resolve
            else:
                sheet, ref = target
                d = self._Ranges().push(f"'{sheet.upper().replace(chr(39), chr(39) * 2)}'!{ref}").ranges[0]
                self._names[name] = (self._index[sheet.upper()], *parse_range(ref), d)
        return self._names[name]

    def _node(self, sheet: int, f, reuse: bool = True) -> Node:
        title = self.titles[sheet].upper()
        reuse = reuse and not _POSITIONAL.search(f.text)
        # references carry their sheet: the same pattern on two sheets is one function
        key, refs, used, nums = _pattern(f.text, title, self._names_text)
        comp = self.patterns.get(key) if reuse else None
        if comp is _VERBATIM:  # its literals are not separate nodes: the pattern keeps them
            key, refs, used, nums = _pattern(f.text, title, self._names_text, literals=False)
            comp = self.patterns.get(key)
        consts = None
        if comp is None:
            comp = self._compile(sheet, f, refs, used)
            if reuse and all(not i[0].startswith("fixed") for i in comp.inputs):
                comp.literals = comp.literal_keys(nums) if nums else []
                if comp.literals is None:
                    self.patterns[key] = _VERBATIM
                    key = _pattern(f.text, title, self._names_text, literals=False)[0]
                self.patterns[key] = comp
        elif comp.literals:
            mine = list(dict.fromkeys(nums))
            if mine != comp.literals:
                consts = {k: _number(v) for k, v in zip(comp.literals, mine)}
        args = []
        for (kind, k), template in zip(comp.inputs, comp.templates):
            if kind in ("name", "fixed name"):
                a = self._name_arg(used[k] if kind == "name" else k)
                args.append(a if a is None or comp.wants_ranges else (*a[:5], None))
                continue
            s, r1, c1, r2, c2 = refs[k] if kind == "ref" else comp.refs[k]
            d = None
            if comp.wants_ranges:
                d = template if (s, r1, c1, r2, c2) == comp.refs[k] else _range_dict(template, r1, c1, r2, c2)
            args.append((self._index.get(s, -1), r1, c1, r2, c2, d))
        r1, c1, r2, c2 = f.ref or (f.row, f.col, f.row, f.col)
        single = f.ref is None
        template = self._out_templates.get((sheet, single))
        if template is None:
            template = self._out_templates[(sheet, single)] = self._Ranges().push(
                self._where(f), context={"sheet": title}).ranges[0]
        out = _range_dict(template, r1, c1, r2, c2)
        return Node(sheet, r1, c1, r2, c2, comp, out, args, bool(_VOLATILE.search(f.text)), f, consts)

    # ---- the dependency graph ---------------------------------------------------------------------------------
    def _grow(self, sheet: int, rows: int, cols: int) -> None:
        g = self.grids[sheet]
        if rows > g.shape[0] or cols > g.shape[1]:
            new = np.empty((max(rows, g.shape[0]), max(cols, g.shape[1])), dtype=object)
            new[:] = self._sh.EMPTY
            new[:g.shape[0], :g.shape[1]] = g
            self.grids[sheet] = new

    def _link(self) -> None:
        for n in self.nodes:
            self._grow(n.sheet, n.r2, n.c2)
        owner = [np.full(g.shape, -1, dtype=np.int64) for g in self.grids]
        for i, n in enumerate(self.nodes):
            o = owner[n.sheet][n.r1 - 1:n.r2, n.c1 - 1:n.c2]
            if (o >= 0).any():
                raise XlgptError(f"the formulas engine: two formulas write {self.titles[n.sheet]}!"
                                 f"{col_letters(n.c1)}{n.r1}")
            o[:] = i
        self._owner = owner
        succ: list[list[int]] = [[] for _ in self.nodes]
        indeg = np.zeros(len(self.nodes), dtype=np.int64)
        cache: dict[tuple, np.ndarray] = {}
        rects = []
        for i, n in enumerate(self.nodes):
            deps = set()
            for a in n.args:
                if a is None or a[0] < 0:
                    continue
                s, r1, c1, r2, c2 = a[:5]
                rects.append((i, s, r1, c1, r2, c2))
                key = (s, r1, c1, r2, c2)
                d = cache.get(key)
                if d is None:
                    o = owner[s][r1 - 1:r2, c1 - 1:c2]
                    d = cache[key] = np.unique(o[o >= 0]) if o.size else o.ravel()
                deps.update(d.tolist())
            if i in deps:
                raise XlgptError(f"the formulas engine: circular reference at {self.titles[n.sheet]}!"
                                 f"{col_letters(n.c1)}{n.r1}")
            for d in deps:
                succ[d].append(i)
            indeg[i] = len(deps)
        order, ready = [], [i for i in range(len(self.nodes)) if indeg[i] == 0]
        while ready:
            i = ready.pop()
            order.append(i)
            for j in succ[i]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    ready.append(j)
        if len(order) != len(self.nodes):
            raise XlgptError("the formulas engine: the workbook has a circular reference")
        self.order = order
        self._rank = np.empty(len(order), dtype=np.int64)
        self._rank[order] = np.arange(len(order))
        self._succ = succ
        self._rects = np.array(rects, dtype=np.int64).reshape(-1, 6)

    # ---- values -----------------------------------------------------------------------------------------------
    def read(self, sheet: int, r1: int, c1: int, r2: int, c2: int) -> np.ndarray:
        g = self.grids[sheet]
        if r2 <= g.shape[0] and c2 <= g.shape[1]:
            return g[r1 - 1:r2, c1 - 1:c2].copy()
        out = np.empty((r2 - r1 + 1, c2 - c1 + 1), dtype=object)
        out[:] = self._sh.EMPTY
        part = g[r1 - 1:min(r2, g.shape[0]), c1 - 1:min(c2, g.shape[1])]
        out[:part.shape[0], :part.shape[1]] = part
        return out

    def set(self, sheet: int, row: int, col: int, value) -> None:
        """Store a value; typed over a one-cell formula it replaces the formula, as in a spreadsheet."""
        self._grow(sheet, row, col)
        owner = self._owner[sheet]
        if row <= owner.shape[0] and col <= owner.shape[1] and owner[row - 1, col - 1] >= 0:
            n = self.nodes[owner[row - 1, col - 1]]
            if (n.r1, n.c1) != (n.r2, n.c2):
                raise XlgptError(f"the formulas engine cannot change one cell of the array formula in "
                                 f"{self.titles[sheet]}!{n.out['ref']}")
            n.removed = True
            owner[row - 1, col - 1] = -1
        self.grids[sheet][row - 1, col - 1] = value
        self._changed.add((sheet, row, col))

    def _evaluate(self, n: Node) -> None:
        sh, Ranges = self._sh, self._Ranges
        args = []
        for a in n.args:
            if a is None:
                args.append(self._errors["#NAME?"])
            elif a[0] < 0:
                args.append(self._errors["#REF!"])
            elif a[5] is None:
                args.append(self.read(*a[:5]))
            else:
                d = a[5]
                args.append(Ranges((d,), {d["name"]: (d, self.read(*a[:5]))}))
        try:
            try:
                out = n.compiled(*args, consts=n.consts)
            except _OwnCompile:
                own = self._node(n.sheet, n.formula, reuse=False)
                n.compiled, n.args, n.consts = own.compiled, own.args, None
                return self._evaluate(n)
        except sh.DispatcherError as ex:  # as formulas.cell.CellWrapper
            if not isinstance(ex.ex, NotImplementedError):
                raise XlgptError(f"the formulas engine failed at {self.titles[n.sheet]}!{n.out['ref']}: "
                                 f"{' '.join(str(ex.ex).split())}") from None
            out = self._errors["#NAME?"]
        value = self._format_output(n.out, self._replace_empty(out)).value
        self.grids[n.sheet][n.r1 - 1:n.r2, n.c1 - 1:n.c2] = value

    def calculate(self) -> int:
        """Evaluate what changed since the last calculation (everything the first time); returns how many
        formulas ran."""
        if not self._fresh:
            todo = self.order
        else:
            start = {i for i, n in enumerate(self.nodes) if n.volatile and not n.removed}
            rc = self._rects
            for s, r, c in self._changed:
                hit = rc[(rc[:, 1] == s) & (rc[:, 2] <= r) & (rc[:, 4] >= r) & (rc[:, 3] <= c) & (rc[:, 5] >= c)]
                start.update(hit[:, 0].tolist())
            seen, stack = set(start), list(start)
            while stack:
                for j in self._succ[stack.pop()]:
                    if j not in seen:
                        seen.add(j)
                        stack.append(j)
            todo = sorted(seen, key=self._rank.__getitem__)
        self._changed.clear()
        for i in todo:
            if not self.nodes[i].removed:
                self._evaluate(self.nodes[i])
        self._fresh = True
        return len(todo)
