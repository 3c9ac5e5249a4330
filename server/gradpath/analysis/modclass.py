"""What one file says about its nn.Module classes as classes: which methods `forward` reaches through
`self.` calls (own or inherited from a class of the same file), which attributes `__init__` sets,
and where else the file mentions an attribute.

Read by GP112 (layers built in a method that `forward` reaches), GP113 (a registered submodule nothing
uses) and GP114 (a plain tensor attribute `forward` reads). Pure: no torch, no pygls.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# Reading a module's attributes without naming them: anything may be used.
_DYNAMIC_SELF = frozenset({"children", "named_children", "modules", "named_modules", "_modules", "__dict__",
                           "_parameters", "parameters", "named_parameters"})
_DYNAMIC_FUNCS = frozenset({"getattr", "setattr", "vars", "hasattr", "delattr"})


@dataclass(frozen=True)
class InitAttr:
    cls: str  # the class whose own __init__ sets it
    attr: str
    stmt: ast.Assign
    value: ast.AST


def _methods(cls_node: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    out: dict = {}
    for n in cls_node.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[n.name] = n
    return out


def class_chain(sym, name: str, _seen: frozenset = frozenset()) -> list[str]:
    """`name` and the local classes it inherits from, nearest first (a depth-first MRO)."""
    if name in _seen or name not in sym.classes:
        return []
    out = [name]
    for b in sym.classes[name].bases:
        for c in class_chain(sym, b, _seen | {name}):
            if c not in out:
                out.append(c)
    return out


def resolve_method(sym, cls: str, method: str) -> tuple[str, ast.FunctionDef] | None:
    """The definition `self.<method>` reaches on an instance of `cls` (own or inherited, this file)."""
    for c in class_chain(sym, cls):
        m = _methods(sym.classes[c].node).get(method)
        if m is not None:
            return c, m
    return None


def _self_name(fn: ast.FunctionDef) -> str | None:
    args = list(fn.args.posonlyargs) + list(fn.args.args)
    if not args or any(isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod") for d in fn.decorator_list):
        return None
    return args[0].arg


def walk_body(fn: ast.AST):
    """The nodes of a function's own body (not nested defs or classes; lambdas are walked)."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        stack.extend(ast.iter_child_nodes(n))


def self_attr(node: ast.AST, self_name: str = "self") -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == self_name:
        return node.attr
    return None


def forward_reach(sym, cls: str, root: str = "forward") -> list[tuple[str, ast.FunctionDef]]:
    """`forward` (own or inherited) and every method it reaches through `self.m(...)` or a bound
    `self.m` handed on (`checkpoint(self.block_fn, x)`), transitively: (defining class, def)."""
    start = resolve_method(sym, cls, root)
    if start is None:
        return []
    out, seen, todo = [], set(), [start]
    while todo:
        c, fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        out.append((c, fn))
        me = _self_name(fn)
        if me is None:
            continue
        for n in walk_body(fn):
            name = self_attr(n, me)
            if name and isinstance(n.ctx, ast.Load):
                hit = resolve_method(sym, cls, name)
                if hit is not None and id(hit[1]) not in seen:
                    todo.append(hit)
    return out


def init_attrs(sym, cls: str) -> list[InitAttr]:
    """`self.x = <value>` statements of `cls`'s own `__init__` (also inside if/with/try blocks)."""
    init = _methods(sym.classes[cls].node).get("__init__")
    if init is None:
        return []
    me = _self_name(init) or "self"
    out = []
    for n in walk_body(init):
        if isinstance(n, ast.Assign) and len(n.targets) == 1:
            a = self_attr(n.targets[0], me)
            if a:
                out.append(InitAttr(cls, a, n, n.value))
    return out


def dynamic_access(sym, cls: str) -> bool:
    """A method of the class chain reads its attributes without naming them (`self.children()`,
    `getattr(self, name)`, `self._modules`, `vars(self)`), or iterates `self` (a container)."""
    for c in class_chain(sym, cls):
        for fn in _methods(sym.classes[c].node).values():
            me = _self_name(fn) or "self"
            for n in walk_body(fn):
                a = self_attr(n, me)
                if a in _DYNAMIC_SELF:
                    return True
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _DYNAMIC_FUNCS \
                        and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id == me:
                    return True
                if isinstance(n, (ast.For, ast.comprehension)) and isinstance(n.iter, ast.Name) and n.iter.id == me:
                    return True
    return False


def opaque_library_class(ctx, call: ast.Call, inv) -> bool:
    """A class of another library (transformers, torchvision) whose parameters cannot be listed:
    capitalised names there are not all modules (`DynamicCache()`, `SequenceClassifierOutput(...)`,
    `BertConfig()`), so "may have parameters" is not enough to call it a layer."""
    if inv.params:
        return False
    qn = ctx.facts.module_class_of_call(call) or ""
    return not qn.startswith("torch.nn.") and qn not in ctx.symbols.classes and not ctx.symbols.is_module_class(qn)


def stored_on_self(stmt) -> bool:
    """`self.x = ...` / `self.d[k] = ...` (also through `.to(...)` on the right): kept on the module."""
    if not isinstance(stmt, ast.Assign):
        return False
    for t in stmt.targets:
        while isinstance(t, ast.Subscript):
            t = t.value
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
            return True
    return False


# -- what the whole text says (GP113/GP114 read these, so an incremental re-analysis of a part of
# the file sees the same answers; incremental.py re-runs the whole file when the signature changes)
_ATTR = re.compile(r"\.([A-Za-z_]\w*)")
_STORE = re.compile(r"\.([A-Za-z_]\w*)[ \t]*=(?!=)")
_SELF_STORE = re.compile(r"self\.(\w+)\s*=(?!=)")
_STR = re.compile(r"""(['"])([A-Za-z_][\w.]*)\1""")
_CLASS = re.compile(r"^class\s+([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?", re.M)
_OPTIMIZERS = re.compile(r"\b(?:SGD|Adam|AdamW|RMSprop|Adagrad|Adadelta|Adamax|NAdam|RAdam|LBFGS|ASGD|Rprop)\s*\(|"
                         r"optim\.[A-Z]")
_PARAM_LINES = re.compile(r"^.*parameters\(\).*$", re.M)
_PENALTY_OP = re.compile(r"\bpow\b|\bnorm\b|\babs\b|\*\*|\bsquare\b")
_DYN = re.compile(r"self\.(?:children|named_children|modules|named_modules|_modules|_parameters|parameters|"
                  r"named_parameters|__dict__)\b|(?:getattr|setattr|hasattr|delattr|vars)\(\s*self\b|"
                  r" in\s+self\s*:")


class TextFacts:
    """File-wide facts read from the text itself (comments and strings count as mentions: quieter).
    The attribute counts are read at once; the rest only when some attribute is never read."""

    def __init__(self, text: str):
        from collections import Counter
        self.text = text
        self.stores = Counter(_STORE.findall(text))
        self.loads = Counter(_ATTR.findall(text))
        self.loads.subtract(self.stores)
        self.candidates = set(_SELF_STORE.findall(text))
        self.strings: set[str] = set()
        for q, v in _STR.findall(text):
            self.strings.add(v)
            self.strings.add(v.split(".", 1)[0])
        self._bases = None
        self._dynamic = None

    def used(self, attr: str) -> bool:
        return self.loads.get(attr, 0) > 0 or attr in self.strings

    def stored_twice(self, attr: str) -> bool:
        return self.stores.get(attr, 0) > 1

    @property
    def bases(self) -> dict[str, set[str]]:
        if self._bases is None:
            self._bases = {m.group(1): {b.strip().rsplit(".", 1)[-1] for b in (m.group(2) or "").split(",")
                                        if b.strip()} for m in _CLASS.finditer(self.text)}
        return self._bases

    def subclasses(self, cls: str) -> set[str]:
        out, todo = {cls}, [cls]
        while todo:
            c = todo.pop()
            for k, bs in self.bases.items():
                if c in bs and k not in out:
                    out.add(k)
                    todo.append(k)
        return out

    def built(self, cls: str) -> bool:
        """The text calls `cls(` or a subclass's name (other than in its `class X(...)` line)."""
        return any(self.text.count(c + "(") > self.text.count("class " + c + "(") for c in self.subclasses(cls))

    @property
    def trains(self) -> bool:
        t = self.text
        return "backward(" in t or "backward (" in t or "training_step" in t or _OPTIMIZERS.search(t) is not None

    @property
    def penalises(self) -> bool:
        return any(_PENALTY_OP.search(m.group(0)) for m in _PARAM_LINES.finditer(self.text))

    @property
    def dynamic(self) -> set[str]:
        if self._dynamic is None:
            import bisect
            starts = [(m.start(), m.group(1)) for m in _CLASS.finditer(self.text)]
            offsets = [s for s, _ in starts]
            self._dynamic = set()
            if starts:
                for m in _DYN.finditer(self.text):
                    i = bisect.bisect_right(offsets, m.start()) - 1
                    if i >= 0:
                        self._dynamic.add(starts[i][1])
        return self._dynamic

    def signature(self) -> tuple:
        attrs = frozenset((a, min(self.loads.get(a, 0), 1), min(self.stores.get(a, 0), 2), a in self.strings)
                          for a in self.candidates)
        if not any(not self.used(a) for a in self.candidates):
            return (attrs,)  # every attribute is read somewhere: nothing else can matter to GP113
        return (attrs, frozenset(c for c in self.bases if self.built(c)),
                frozenset((k, frozenset(v)) for k, v in self.bases.items()),
                self.trains, self.penalises, frozenset(self.dynamic))


_SIGS: dict = {}


def text_signature(text: str) -> tuple:
    """TextFacts(text).signature(), remembered for the last two texts (an editor asks for the
    previous text's and the new one's on every keystroke)."""
    sig = _SIGS.get(text)
    if sig is None:
        sig = TextFacts(text).signature()
        if len(_SIGS) >= 2:
            _SIGS.pop(next(iter(_SIGS)))
        _SIGS[text] = sig
    return sig
