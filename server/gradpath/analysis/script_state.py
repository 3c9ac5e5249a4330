"""Which top-level statements share state, for incremental re-analysis (see incremental.py).

Module-level code ("script") runs in order and hands its values to the functions it calls, so a
change to one script statement can change findings in code that does not name anything it binds.
Treating all script code as one unit is safe but makes every edit in a training script's argument
parser re-analyse the whole file. This module splits the script into statements with their own
def-use, and keeps together only what really shares state:

- A script statement is *independent* when it binds only names whose values the rules never read
  beyond "unknown" or cannot change (an argument parser or a logger, a literal, an imported module),
  uses only such names, functions, classes and builtins, and calls only builtins that touch no shared
  object, the factories of parsers and loggers, and methods of parsers and loggers.
  `parser.add_argument('--lr', type=float, default=0.1)` is independent; `torch.manual_seed(0)`,
  `model = Net()`, `cfg.lr = 0.1` and `main()` are not.
- Every other script statement ("stateful") is kept with the others, with every region that reads
  a name whose object may be mutated (bound from anything but a literal, a parser or a logger, or
  declared `global` somewhere), and with every function and class such a statement reaches by
  name, transitively: they run with the script's values (`train(model, opt)` at module level
  analyses `train`'s body with that model and optimizer).
- A statement that mutates an object (`cfg.accum = 4`, `model.requires_grad_(False)`, `f(model)`)
  counts as defining the name it mutates, so whatever reads that name is re-analysed with it.

Pure: stdlib `ast` only.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from gradpath.analysis.facts import key_of as _dotted  # `a.b.c` of an attribute chain

# Objects no rule reads beyond "unknown": argument parsers and loggers. Calls on them, and names
# bound from them, change no finding elsewhere in the file.
INERT_FACTORIES = frozenset({
    "argparse.ArgumentParser", "logging.getLogger", "configargparse.ArgumentParser", "configargparse.ArgParser",
})
# Builtins an independent statement may call: they bind nothing and mutate no object a rule reads.
PURE_BUILTINS = frozenset({
    "print", "len", "str", "int", "float", "bool", "sorted", "min", "max", "abs", "round", "range",
    "tuple", "repr", "format", "isinstance", "callable", "enumerate", "zip", "hasattr",
})

# Builtins whose result cannot be mutated (a bool, a number, a string).
_IMMUTABLE_BUILTINS = frozenset({"hasattr", "isinstance", "callable", "len", "str", "int", "float", "bool",
                                 "round", "abs", "repr", "format"})

_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_CONST_OPS = (ast.UnaryOp, ast.BinOp, ast.BoolOp)


@dataclass(frozen=True)
class StatementFacts:
    """What one region's statements do at module level (computed once per region)."""
    binds: frozenset  # names bound at module level
    values: tuple  # (name, value class) per binding: "const", ("call", dotted), ("method", root), "other"
    mutates: frozenset  # roots of stores into attributes/items, receivers of method calls, call arguments
    stores: frozenset  # roots of stores into attributes/items (`cfg.lr = 0.1`, `d[k] = v`), `del x.a`
    calls: tuple  # ("name", id) | ("method", root, "a.b.c") | ("str",) | ("other",)
    import_map: tuple  # (local name, qualified name) for imports
    uses: frozenset  # names read
    globals_: frozenset  # names some nested function declares `global`
    simple: bool  # no nested function, class or lambda, no global statement, no star import
    star_import: bool


def _root(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_const(node) -> bool:
    if isinstance(node, ast.Constant):
        return not isinstance(node.value, (list, dict, set))
    if isinstance(node, ast.UnaryOp):
        return _is_const(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_const(node.left) and _is_const(node.right)
    if isinstance(node, ast.BoolOp):
        return all(_is_const(v) for v in node.values)
    if isinstance(node, ast.Tuple):
        return all(_is_const(e) for e in node.elts)
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) for v in node.values)
    return False


def _value_class(value) -> object:
    if _is_const(value):
        return "const"
    if isinstance(value, ast.Call):
        f = value.func
        if isinstance(f, ast.Attribute):
            d = _dotted(f)
            root = _root(f.value)
            return ("method", root, d)
        if isinstance(f, ast.Name):
            if f.id in _IMMUTABLE_BUILTINS:
                return "const"  # has_compile = hasattr(torch, "compile")
            return ("call", f.id)
    return "other"


def def_facts(name: str) -> StatementFacts:
    """A plain `def`/`class` region: it binds its name and nothing else at module level."""
    return StatementFacts(frozenset({name}), ((name, "def"),), frozenset(), frozenset(), (), (), frozenset(),
                          frozenset(), False, False)


def statement_facts(stmts: list) -> StatementFacts:
    binds: set = set()
    values: list = []
    mutates: set = set()
    stores: set = set()
    calls: list = []
    imports: list = []
    uses: set = set()
    globals_: set = set()
    simple = True
    star = False

    def bind_target(t, value) -> None:
        if isinstance(t, ast.Name):
            binds.add(t.id)
            values.append((t.id, _value_class(value) if value is not None else "other"))
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                bind_target(e, None)
        elif isinstance(t, ast.Starred):
            bind_target(t.value, None)
        else:  # x.attr = v, x[k] = v: a mutation of x
            r = _root(t)
            if r:
                mutates.add(r)
                stores.add(r)

    todo = list(stmts)
    while todo:
        n = todo.pop()
        t = type(n)
        if t in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
            binds.add(n.name)
            values.append((n.name, "def"))
            simple = False
            for inner in ast.walk(n):
                if isinstance(inner, ast.Global):
                    globals_.update(inner.names)
                elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load):
                    uses.add(inner.id)
            continue
        if t is ast.Lambda:
            simple = False
        elif t in (ast.Global, ast.Nonlocal):
            simple = False
            globals_.update(n.names)
        elif t in (ast.Import, ast.ImportFrom):
            mod = getattr(n, "module", None) or ""
            for al in n.names:
                if al.name == "*":
                    star = True
                    simple = False
                    continue
                local = (al.asname or al.name).split(".")[0] if t is ast.Import else (al.asname or al.name)
                binds.add(local)
                values.append((local, "import"))
                if t is ast.Import:
                    imports.append((local, al.name if al.asname else local))
                elif not getattr(n, "level", 0):
                    imports.append((local, f"{mod}.{al.name}" if mod else al.name))
            continue
        elif t is ast.Assign:
            for tg in n.targets:
                bind_target(tg, n.value)
            todo.append(n.value)
            for tg in n.targets:
                if not isinstance(tg, ast.Name):
                    todo.extend(ast.iter_child_nodes(tg))
            continue
        elif t is ast.AnnAssign:
            bind_target(n.target, n.value if n.value is not None else ast.Constant(None))
            if n.value is not None:
                todo.append(n.value)
            if not isinstance(n.target, ast.Name):
                todo.extend(ast.iter_child_nodes(n.target))
            continue
        elif t is ast.AugAssign:
            bind_target(n.target, None)
            if isinstance(n.target, ast.Name):
                uses.add(n.target.id)
            todo.append(n.value)
            if not isinstance(n.target, ast.Name):
                todo.extend(ast.iter_child_nodes(n.target))
            continue
        elif t in (ast.For, ast.AsyncFor):
            bind_target(n.target, None)
            todo.append(n.iter)
            todo.extend(n.body)
            todo.extend(n.orelse)
            continue
        elif t in (ast.With, ast.AsyncWith):
            for it in n.items:
                todo.append(it.context_expr)
                if it.optional_vars is not None:
                    bind_target(it.optional_vars, None)
            todo.extend(n.body)
            continue
        elif t is ast.NamedExpr:
            bind_target(n.target, None)
            todo.append(n.value)
            continue
        elif t is ast.ExceptHandler:
            if n.name:  # the exception, unbound again after the handler
                binds.add(n.name)
                values.append((n.name, "const"))
        elif t is ast.Delete:
            for tg in n.targets:
                bind_target(tg, None)
            continue
        elif t is ast.Call:
            f = n.func
            if isinstance(f, ast.Name):
                calls.append(("name", f.id))
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Constant) \
                    and isinstance(f.value.value, str):
                calls.append(("str",))  # "...".format(...), ", ".join(...)
            elif isinstance(f, ast.Attribute):
                d = _dotted(f)
                root = _root(f.value)
                calls.append(("method", root, d))
                if root:
                    mutates.add(root)
            else:
                calls.append(("other",))
            if isinstance(f, ast.Name) and f.id in PURE_BUILTINS:
                todo.extend(ast.iter_child_nodes(n))
                continue  # len(x), hasattr(torch, "compile"): nothing mutated
            for a in list(n.args) + [k.value for k in n.keywords]:
                r = _root(a)
                if r and isinstance(a, (ast.Name, ast.Attribute, ast.Subscript, ast.Starred)):
                    mutates.add(r)
        elif t is ast.Name:
            if isinstance(n.ctx, ast.Load):
                uses.add(n.id)
            else:
                binds.add(n.id)
                values.append((n.id, "other"))
            continue
        elif t in (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp):
            # comprehension variables are its own; everything else it reads counts as a use
            own = {x.id for g in n.generators for x in ast.walk(g.target) if isinstance(x, ast.Name)}
            for x in ast.walk(n):
                if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Load) and x.id not in own:
                    uses.add(x.id)
                elif isinstance(x, ast.Call):
                    fx = x.func
                    if isinstance(fx, ast.Name) and fx.id not in own:
                        calls.append(("name", fx.id))
                    elif isinstance(fx, ast.Attribute):
                        root = _root(fx.value)
                        calls.append(("method", root if root not in own else None, _dotted(fx)))
                    else:
                        calls.append(("other",))
                elif isinstance(x, (ast.Lambda, ast.NamedExpr)):
                    simple = False
            continue
        todo.extend(ast.iter_child_nodes(n))
    return StatementFacts(frozenset(binds), tuple(values), frozenset(mutates), frozenset(stores), tuple(calls),
                          tuple(imports),
                          frozenset(uses), frozenset(globals_), simple, star)


@dataclass
class Coupling:
    kinds: dict  # module-level name -> "function" | "import" | "immutable" | "inert" | "mutable"
    independent: set  # ids of script regions that share no state
    stateful: set  # ids of regions re-analysed together
    defines: dict  # id(region) -> names it binds or mutates (a mutated object counts as redefined)


def _resolve(dotted: str | None, aliases: dict) -> str | None:
    if not dotted:
        return None
    head, _, rest = dotted.partition(".")
    q = aliases.get(head)
    if q is None:
        return None
    return f"{q}.{rest}" if rest else q


def coupling(regions: list) -> Coupling:
    """Kinds of the module-level names, the independent script statements, and the regions that
    share state (see the module docstring). `regions` carry `kind` ("import" | "def" | "script" |
    "empty"), `uses`, `defines` and `facts` (StatementFacts)."""
    aliases: dict = {}
    bindings: dict = {}
    declared_global: set = set()
    star = False
    for r in regions:
        f = r.facts
        if f is None:
            continue
        star = star or f.star_import
        for local, q in f.import_map:
            aliases.setdefault(local, q)
        declared_global |= f.globals_
        for name, vc in f.values:
            bindings.setdefault(name, []).append(vc)
    kinds: dict = {}
    for name, vcs in bindings.items():
        if all(v == "def" for v in vcs) or (all(v in ("def", "import") for v in vcs) and "def" in vcs):
            kinds[name] = "function"  # a class defined over an imported name of the same name
        elif all(v == "import" for v in vcs):
            kinds[name] = "import"
        elif all(v == "const" for v in vcs):
            kinds[name] = "immutable"
    # inert: every binding a parser or logger factory, a method of an inert name, or a literal
    inert: set = set()
    changed = True
    while changed:
        changed = False
        for name, vcs in bindings.items():
            if name in inert or name in kinds:
                continue
            ok, any_inert = True, False
            for v in vcs:
                if v == "const":
                    continue
                if isinstance(v, tuple) and v[0] == "call" and _resolve(v[1], aliases) in INERT_FACTORIES:
                    any_inert = True
                elif isinstance(v, tuple) and v[0] == "method" and (
                        v[1] in inert or _resolve(v[2], aliases) in INERT_FACTORIES):
                    any_inert = True
                else:
                    ok = False
                    break
            if ok and any_inert:
                inert.add(name)
                changed = True
    for name in inert:
        kinds[name] = "inert"
    for name in bindings:
        if name not in kinds or name in declared_global:
            kinds[name] = "mutable"
    for name in declared_global:
        kinds[name] = "mutable"

    def independent(r) -> bool:
        f = r.facts
        if f is None or not f.simple or star:
            return False
        if any(kinds.get(n) not in ("immutable", "inert", "import") for n in f.binds):
            return False
        if any(kinds.get(n) != "inert" for n in f.stores if n in kinds):
            return False  # cfg.lr = 0.1, torch.backends.cudnn.benchmark = True
        if any(kinds.get(n) not in ("inert", "import") for n in f.mutates if n in kinds):
            return False  # a module is not state the rules follow; calls on it are checked below
        if any(kinds.get(n) not in (None, "immutable", "inert", "import", "function") for n in f.uses):
            return False
        for c in f.calls:
            if c[0] == "name":
                if c[1] in kinds:
                    if _resolve(c[1], aliases) not in INERT_FACTORIES:
                        return False
                elif c[1] not in PURE_BUILTINS:
                    return False
            elif c[0] == "str":
                continue
            elif c[0] == "method":
                if not (c[1] in inert or _resolve(c[2], aliases) in INERT_FACTORIES):
                    return False
            else:
                return False
        return True

    indep = {id(r) for r in regions if r.kind == "script" and independent(r)}
    defines: dict = {}
    for r in regions:
        d = set(r.defines)
        if r.facts is not None:
            d |= {n for n in r.facts.mutates if kinds.get(n) in ("mutable", "function")}
        defines[id(r)] = frozenset(d)
    shared = {n for n, k in kinds.items() if k == "mutable"}
    seeds = [r for r in regions if r.kind == "script" and id(r) not in indep]
    # what stateful script code reaches by name runs with its values (`train(model, opt)` at module
    # level, `if __name__ == "__main__": main()`)
    by_name: dict = {}
    for r in regions:
        if r.kind in ("def", "script"):
            for n in r.defines:
                by_name.setdefault(n, []).append(r)
    stateful = {id(r) for r in seeds}
    todo = list(seeds)
    while todo:
        r = todo.pop()
        for n in r.uses:
            for q in by_name.get(n, ()):
                if id(q) not in stateful and id(q) not in indep:
                    stateful.add(id(q))
                    todo.append(q)
    # and whatever reads an object the script may change
    stateful |= {id(r) for r in regions if r.kind in ("def", "script") and r.uses & shared}
    return Coupling(kinds, indep, stateful, defines)
