"""Per-module summaries, computed from one module's tree and nothing else.

A summary is plain data (dicts, lists, strings, ints: JSON-able, so the disk cache never unpickles
anything). It mentions other modules only by qualified name: a name imported from elsewhere is
written as the dotted name it is imported under (`torch.nn.CrossEntropyLoss`, `models.net.Net`,
or `.net.Net` for a relative import: the leading dots count levels, the linker resolves them), and a
name defined in this module as `@.Name` (`@` stands for this module's own dotted name, which the
index decides).

Values the linker evaluates ("value descriptors", vd) are small lists:
  ["ref", qn]              a named thing: class, function, module-level value
  ["call", vd]             the result of calling vd (an instance of a class, a factory's return)
  ["param", fn, name]      a parameter of function fn (`@.train`, `@.Trainer.__init__`)
  ["attr", vd, name]       attribute `name` of the object vd
  ["self", cls]            `self` inside methods of class cls
  ["item", vd(, key vd)]   an element of a container (a registry lookup: MODELS[name], MODELS.get(n)),
                           with the key when it is a literal or a parameter (its default, its callers)
  ["coll", [vd, ...](, keys)]  a dict/list/tuple literal (its values; a dict's literal keys or None)
  ["lit", value]           a string literal (a parameter default, what a caller passes)
  None                     unknown

A function's summary holds "defaults": parameter -> vd of its default (evaluated where the function
is defined), "nkwonly" (how many of its params are keyword-only), and every call record ends in what
it passes (positional count, or [that, keyword names]; None with `*args`/`**kwargs`), so the linker knows
which parameters a call leaves to their defaults.
"""
from __future__ import annotations

import ast
import builtins

from gradpath.analysis.source import SourceFile, normalize, split_lines

SCHEMA = 20

ACTS = {
    "torch.softmax": "softmax", "torch.nn.functional.softmax": "softmax", "torch.special.softmax": "softmax",
    "torch.sigmoid": "sigmoid", "torch.nn.functional.sigmoid": "sigmoid", "torch.special.expit": "sigmoid",
    "torch.log_softmax": "log_softmax", "torch.nn.functional.log_softmax": "log_softmax",
}
ACT_METHODS = {"softmax": "softmax", "sigmoid": "sigmoid", "log_softmax": "log_softmax"}
ACT_LAYERS = {"torch.nn.Softmax": "softmax", "torch.nn.Sigmoid": "sigmoid", "torch.nn.LogSoftmax": "log_softmax"}
# calls that hand back the same module (or a wrapper that behaves as it for our questions)
SAME_INSTANCE_METHODS = {"to", "cuda", "cpu", "float", "double", "half", "train", "eval", "requires_grad_",
                         "type", "bfloat16"}
WRAPPERS = {"torch.nn.DataParallel", "torch.nn.parallel.DistributedDataParallel",
            "torch.nn.parallel.DataParallel", "torch.compile", "copy.deepcopy"}
EFFECT_METHODS = {"zero_grad": "zero_grad", "step": "step", "backward": "backward", "eval": "eval",
                  "train": "train"}
CUTS = {"detach", "item", "numpy", "tolist"}
# reshaping keeps what the values are (probabilities stay probabilities)
SHAPE_METHODS = {"view", "reshape", "contiguous", "squeeze", "unsqueeze", "flatten", "permute", "transpose"}
MAX_VD_DEPTH = 6


def summarize(text: str, tree: ast.Module | None = None) -> dict | None:
    """The summary of one module's text; None when it does not parse."""
    text = normalize(text)
    if tree is None:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
    src = SourceFile(text=text, lines=split_lines(text), tree=tree)
    try:
        return _Summarizer(src).run()
    except RecursionError:
        return None


def _span(src: SourceFile, node) -> list[int]:
    s = src.span_of(node)
    return [s.line, s.col, s.end_line, s.end_col]


class _Summarizer:
    def __init__(self, src: SourceFile):
        self.src = src
        self.tree = src.tree
        self.imports: dict[str, str] = {}
        self.defs: set[str] = set()
        self.globals: dict[str, list] = {}  # module-level name -> [vd, ...]
        self.class_methods: dict[str, set] = {}  # "@.Cls" -> its own method names
        self.has_star = False

    # -- names ---------------------------------------------------------------------------------
    def qual(self, node) -> str | None:
        """Qualified name of a Name/Attribute chain rooted in an import or a definition here."""
        if isinstance(node, ast.Name):
            if node.id in self.imports:
                return self.imports[node.id]
            if node.id in self.defs or node.id in self.globals:
                return "@." + node.id
            return None
        if isinstance(node, ast.Attribute):
            base = self.qual(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _collect_imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.imports[a.asname] = a.name
                    else:
                        head = a.name.split(".")[0]
                        self.imports.setdefault(head, head)
            elif isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                for a in node.names:
                    if a.name == "*":
                        self.has_star = True
                        continue
                    sep = "" if mod.endswith(".") or not mod else "."
                    self.imports[a.asname or a.name] = f"{mod}{sep}{a.name}"

    # -- the module ----------------------------------------------------------------------------
    def run(self) -> dict:
        self._collect_imports()
        for st in self.tree.body:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs.add(st.name)
            elif isinstance(st, (ast.Assign, ast.AnnAssign)) and st.value is not None:
                for t in (st.targets if isinstance(st, ast.Assign) else [st.target]):
                    if isinstance(t, ast.Name):
                        self.globals.setdefault(t.id, [])
        star = [("." * n.level) + (n.module or "") for n in self.tree.body
                if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)]
        out = {"schema": SCHEMA, "imports": dict(self.imports), "star": star, "classes": {},
               "functions": {}, "globals": {}, "registries": {}}
        # module-level bindings (read by functions that use the names)
        mod_fn = _Fn(self, None, "@.<module>", self.tree, None)
        self.module_fn = mod_fn
        # every name bound by module code (inside `if`/`for`/`with`/`try` blocks too), as one value:
        # `model = A()` / `else: model = B()` is either; `model = model.to(device)` is the same object
        for name in [k for k in mod_fn.assign_nodes if "." not in k]:
            self.globals.setdefault(name, [])
        for name in self.globals:
            out["globals"][name] = [mod_fn.vd(ast.Name(id=name, ctx=ast.Load()))]
        out["functions"]["<module>"] = mod_fn.summary()
        for st in self.tree.body:
            if isinstance(st, ast.ClassDef):
                out["classes"][st.name] = self._class(st, out)
            elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out["functions"][st.name] = _Fn(self, st, "@." + st.name, st, None).summary()
            elif isinstance(st, ast.If):  # `if __name__ == "__main__":` bodies are module code
                pass
        return out

    def _class(self, node: ast.ClassDef, out: dict) -> dict:
        cqn = "@." + node.name
        self.class_methods[cqn] = {st.name for st in node.body
                                   if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef))}
        bases = []
        for b in node.bases:
            q = self.qual(b)
            bases.append(q or "?")
        info = {"line": node.lineno, "span": _span(self.src, node), "bases": bases, "methods": [],
                "submodules": {}, "params": [], "attrs": {}, "forward": None, "decorators": []}
        for d in node.decorator_list:
            f = d.func if isinstance(d, ast.Call) else d
            q = self.qual(f)
            if q:
                info["decorators"].append(q)
                if isinstance(f, ast.Attribute):  # @MODELS.register_module() / @REGISTRY.register
                    reg = self.qual(f.value)
                    if reg:
                        out["registries"].setdefault(reg, []).append(node.name)
        for st in node.body:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
                info["methods"].append(st.name)
                fn = _Fn(self, st, f"{cqn}.{st.name}", st, cqn)
                out["functions"][f"{node.name}.{st.name}"] = fn.summary()
                for attr, vds in fn.self_attrs.items():
                    info["attrs"].setdefault(attr, []).extend(vds)
                for attr, ref in fn.submodules.items():
                    info["submodules"].setdefault(attr, ref)
                for attr, last in fn.seq_last.items():
                    info.setdefault("act_layers", {})[attr] = last
                for p in fn.params_registered:
                    if p not in info["params"]:
                        info["params"].append(p)
                if st.name == "forward":
                    info["forward"] = fn.ret_act
        return info


class _Fn:
    """One function (or the module body): bindings, effects, returns, loss uses, calls."""

    def __init__(self, s: _Summarizer, node, qn: str, body_owner, cls: str | None):
        self.s = s
        self.node = node
        self.qn = qn
        self.cls = cls
        self.params: list[str] = []
        if node is not None:
            a = node.args
            self.params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
        self.assigned: dict[str, list] = {}  # key -> vds (Name or self.x)
        self.assign_nodes: dict[str, list] = {}
        self.self_attrs: dict[str, list] = {}
        self.submodules: dict[str, str] = {}
        self.seq_last: dict[str, list] = {}  # attr -> [act, span of the layer] for activation layers
        self.params_registered: list[str] = []
        self.effects: list = []
        self.loss_uses: list = []
        self.calls: list = []
        self.logs: list = []
        self.returns: list = []
        self.ret_nodes: list = []
        self.ret_act = None
        self.ret_cut = None
        self.ret_sub = None
        self.backwards: list = []  # [loss vd, span, flags, arg data, span of the loss call or None]
        self._depth = 0
        self._elt = None  # set by _model_call_of: which element of the model's result
        stmts = node.body if node is not None else [st for st in body_owner.body]
        self._collect_assigns(stmts)
        self._walk(stmts, cond=False, loop=False, nograd=False)
        self._returns()

    # -- bindings --------------------------------------------------------------------------------
    def _own_nodes(self, stmts):
        """Nodes of these statements, not descending into nested defs/classes/lambdas."""
        stack = [n for n in reversed(stmts)
                 if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        while stack:
            n = stack.pop()
            yield n
            for c in reversed(list(ast.iter_child_nodes(n))):
                if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                    continue
                stack.append(c)

    def _key(self, node) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return "self." + node.attr
        return None

    def _collect_assigns(self, stmts) -> None:
        for n in self._own_nodes(stmts):
            if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    k = self._key(t)
                    if k:
                        self.assign_nodes.setdefault(k, []).append(n.value)
                    elif isinstance(t, (ast.Tuple, ast.List)):
                        # `output, hidden = model(x, hidden)`: each name is an element of the call's result
                        for i, e in enumerate(t.elts):
                            ke = self._key(e)
                            if ke:
                                self.assign_nodes.setdefault(ke, []).append(
                                    _Elt(n.value, i) if isinstance(n.value, ast.Call) else None)
            elif isinstance(n, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.AugAssign)):
                targets = []
                if isinstance(n, (ast.For, ast.AsyncFor)):
                    targets = [n.target]
                elif isinstance(n, ast.AugAssign):
                    targets = [n.target]
                else:
                    targets = [i.optional_vars for i in n.items if i.optional_vars is not None]
                for t in targets:
                    for sub in ast.walk(t):
                        k = self._key(sub)
                        if k:
                            self.assign_nodes.setdefault(k, []).append(None)  # unknown binding
        for k, vals in self.assign_nodes.items():
            vds = [self.vd(v) if v is not None else None for v in vals]
            self.assigned[k] = vds
            if k.startswith("self."):
                self.self_attrs[k[5:]] = vds
                lasts = []  # the activation each binding of the attribute ends in (None: none)
                for v in vals:
                    ref = self._module_ctor(v)
                    last = None
                    if ref:
                        self.submodules[k[5:]] = ref
                        if ref.endswith("Sequential") and v.args and isinstance(v.args[-1], ast.Call):
                            q = self.s.qual(v.args[-1].func)
                            if q in ACT_LAYERS:  # nn.Sequential(..., nn.Softmax(1))
                                last = [ACT_LAYERS[q], _span(self.s.src, v.args[-1])]
                        elif ref in ACT_LAYERS:
                            last = [ACT_LAYERS[ref], None]
                    elif isinstance(v, ast.Call) and (self.s.qual(v.func) or "").endswith("Parameter"):
                        self.params_registered.append(k[5:])
                    lasts.append(last)
                # every binding (the branches of an `if`) ends in the same activation: the first one
                # is where a finding goes
                if lasts and all(x is not None for x in lasts) and len({x[0] for x in lasts}) == 1:
                    self.seq_last[k[5:]] = lasts[0]

    def _module_ctor(self, v) -> str | None:
        if isinstance(v, ast.Call):
            q = self.s.qual(v.func)
            if q and (q.startswith("torch.nn.") or q.startswith("@.") or q[:1] == "." or "." in q) \
                    and q.rsplit(".", 1)[-1][:1].isupper() and not q.endswith("Parameter"):
                return q
        return None

    def vd(self, node, depth: int = 0):
        if node is None or depth > MAX_VD_DEPTH:
            return None
        d = depth + 1
        if isinstance(node, _Elt):
            inner = self.vd(node.value, d)
            return ["item", inner] if inner is not None else None
        if isinstance(node, ast.Name):
            if node.id == "self" and self.cls:
                return ["self", self.cls]
            if node.id in self.params and node.id not in self.assign_nodes:
                return ["param", self.qn, node.id]
            vals = self.assign_nodes.get(node.id)
            if vals:
                # `model = model.to(device)` re-binds the same object: only the other bindings count
                cands = [v for v in vals if not self._rebinds(v, node.id)]
                if len(cands) == 1 and cands[0] is not None:
                    return self.vd(cands[0], d)
                if 1 < len(cands) <= 4 and all(c is not None for c in cands):
                    vs = [self.vd(c, d) for c in cands]
                    if all(v is not None for v in vs):
                        return ["any", vs]  # one of these (if/else branches): the linker takes all
                return None
            q = self.s.qual(node)
            if q is None and self.s.has_star and node.id not in _BUILTINS:
                q = "@." + node.id  # maybe from `from models import *`: the linker looks there
            return ["ref", q] if q else None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and self.cls:
                return ["attr", ["self", self.cls], node.attr]
            q = self.s.qual(node)
            if q:
                return ["ref", q]
            inner = self.vd(node.value, d)
            return ["attr", inner, node.attr] if inner is not None else None
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in SAME_INSTANCE_METHODS:
                return self.vd(f.value, d)
            if isinstance(f, ast.Attribute) and f.attr in ("get", "build", "__getitem__") and node.args:
                inner = self.vd(f.value, d)
                if inner is not None and inner[0] in ("ref", "coll", "attr"):
                    if f.attr == "build":
                        return ["call", ["item", inner]]
                    return self._item(inner, node.args[0], d)
            q = self.s.qual(f)
            if q in WRAPPERS and node.args:
                return self.vd(node.args[0], d)
            if q in ("torch.load", "torch.jit.load"):
                return ["none"]  # a model read back from disk: nothing new among other bindings
            fv = self.vd(f, d)
            return ["call", fv] if fv is not None else None
        if isinstance(node, ast.Subscript):
            inner = self.vd(node.value, d)
            return self._item(inner, node.slice, d) if inner is not None else None
        if isinstance(node, ast.Constant) and node.value is None:
            return ["none"]  # `self.model = None` in __init__, set for real elsewhere
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) <= 80:
            # a name (`build_model("resnet")`, `name="logits"`): what picks a dict entry. Numbers are
            # left unknown: no question reads them, and they are most of a summary's literals
            return ["lit", node.value]
        if isinstance(node, ast.Dict):
            vals = _members([self.vd(v, d) for v in node.values])
            if all(v is None for v in vals):
                return ["coll", vals]  # a table of settings: nothing the linker follows
            keys = [k.value if isinstance(k, ast.Constant) and isinstance(k.value, (str, int)) else None
                    for k in node.keys]
            return ["coll", vals, keys]
        if isinstance(node, (ast.List, ast.Tuple)):
            return ["coll", _members([self.vd(v, d) for v in node.elts])]
        return None

    def _item(self, inner, key_node, d):
        """["item", container] or, with a key that may be known (a literal, a parameter with a
        default), ["item", container, key vd]: the linker then picks the dict entry."""
        kv = self.vd(key_node, d) if isinstance(key_node, (ast.Constant, ast.Name)) else None
        return ["item", inner, kv] if kv is not None and kv[0] in ("lit", "param") else ["item", inner]

    # -- the walk ----------------------------------------------------------------------------------
    def _walk(self, stmts, cond, loop, nograd) -> None:
        for st in stmts:
            self._stmt(st, cond, loop, nograd)

    def _stmt(self, st, cond, loop, nograd) -> None:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        if isinstance(st, (ast.For, ast.AsyncFor, ast.While)):
            self._exprs(st.iter if not isinstance(st, ast.While) else st.test, cond, loop, nograd)
            self._walk(st.body, cond, True, nograd)
            self._walk(st.orelse, True, loop, nograd)
            return
        if isinstance(st, ast.If):
            main = _is_main_guard(st) and self.node is None
            self._exprs(st.test, cond, loop, nograd)
            self._walk(st.body, cond if main else True, loop, nograd)
            self._walk(st.orelse, True, loop, nograd)
            return
        if isinstance(st, ast.Try):
            self._walk(st.body, cond, loop, nograd)
            for h in st.handlers:
                self._walk(h.body, True, loop, nograd)
            self._walk(st.orelse, True, loop, nograd)
            self._walk(st.finalbody, cond, loop, nograd)
            return
        if isinstance(st, (ast.With, ast.AsyncWith)):
            ng = nograd
            for it in st.items:
                q = self.s.qual(it.context_expr.func) if isinstance(it.context_expr, ast.Call) else None
                if q in ("torch.no_grad", "torch.inference_mode"):
                    ng = True
                self._exprs(it.context_expr, cond, loop, nograd)
            self._walk(st.body, cond, loop, ng)
            return
        if isinstance(st, ast.Return):
            if st.value is not None:
                self.ret_nodes.append(st.value)
                self._exprs(st.value, cond, loop, nograd)
            return
        for child in ast.iter_child_nodes(st):
            if isinstance(child, ast.stmt):
                self._stmt(child, cond, loop, nograd)
            else:
                self._exprs(child, cond, loop, nograd)

    def _exprs(self, node, cond, loop, nograd) -> None:
        if node is None:
            return
        calls = [n for n in self._own_nodes([node]) if isinstance(n, ast.Call)]
        # inner calls first (arguments run before the call), then source order
        calls.sort(key=lambda c: (getattr(c, "end_lineno", 0), getattr(c, "end_col_offset", 0)))
        for c in calls:
            self._call(c, cond, loop, nograd)

    def _flags(self, cond, loop, nograd) -> str:
        return ("c" if cond else "") + ("l" if loop else "") + ("n" if nograd else "")

    def _effect_key(self, node) -> str | None:
        """`optimizer`, `model.encoder` (rooted in a parameter) or `self.optimizer` (in a method)."""
        parts = []
        cur = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) \
                and cur.func.attr in SAME_INSTANCE_METHODS:
            return self._effect_key(cur.func.value)
        if not isinstance(cur, ast.Name):
            return None
        if cur.id == "self" and self.cls or cur.id in self.params:
            return ".".join([cur.id] + list(reversed(parts)))
        return None

    def _call(self, c: ast.Call, cond, loop, nograd) -> None:
        f = c.func
        sp = _span(self.s.src, c)
        flags = self._flags(cond, loop, nograd)
        q = self.s.qual(f)
        if isinstance(f, ast.Attribute) and f.attr in EFFECT_METHODS and q is None:
            kind = EFFECT_METHODS[f.attr]
            if kind == "train" and c.args and isinstance(c.args[0], ast.Constant) and c.args[0].value is False:
                kind = "eval"
            if kind == "backward":
                self.backwards.append([self.vd(f.value), sp, flags, self._arg_data(f.value),
                                       self._bound_call_span(f.value, c)])
                self.effects.append(["backward", self._effect_key(f.value), sp, flags])
                return
            if kind == "step" and c.args:
                flags += "x"  # step(closure) / scaler.step(opt): leave to the file's own analysis
            key = self._effect_key(f.value)
            if key is not None and key != "self":
                self.effects.append([kind, key, sp, flags])
            elif key is None and kind in ("zero_grad", "step"):
                self.effects.append([kind, None, sp, flags])
            return
        # a model's forward (`model(x)`, `self.model(x)`): GP407 asks whether the model ran with gradients
        if q is None and (isinstance(f, ast.Name) or isinstance(f, ast.Attribute)
                          and isinstance(f.value, ast.Name) and f.value.id == "self"
                          and f.attr not in self.s.class_methods.get(self.cls, ())):
            key = self._effect_key(f)
            if key is not None and key != "self":
                self.effects.append(["fwd", key, sp, flags])
        # a loss call? criterion(out, y) / F.cross_entropy(out, y)
        if c.args:
            inp = c.args[0]
            models = self._model_calls_of(inp)
            loss = self.vd(f) if models else None
            if loss is not None:
                # what the call passes (a loss function's defaults), and which arguments are plain data
                # [what the call passes (see _passed), which arguments are plain data]
                extra = [_passed(c), [self._is_data(a) for a in c.args]]
                for model, elt in models:
                    self.loss_uses.append([loss, model, _span(self.s.src, inp), sp, flags, elt, extra])
        # logs/sqrt of a parameter (loss modules' forward)
        if q in ("torch.log", "torch.sqrt", "torch.log2", "torch.log10") and c.args \
                and isinstance(c.args[0], ast.Name) and c.args[0].id in self.params:
            self.logs.append([q.rsplit(".", 1)[-1], c.args[0].id, sp, self.s.src.text_of(c)])
        elif isinstance(f, ast.Attribute) and f.attr in ("log", "sqrt") and not c.args \
                and isinstance(f.value, ast.Name) and f.value.id in self.params:
            self.logs.append([f.attr, f.value.id, sp, self.s.src.text_of(c)])
        # calls to other functions: for effects (in order) and for what callers pass
        callee = None
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "self" and self.cls:
            callee = ["attr", ["self", self.cls], f.attr]
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Call) and isinstance(f.value.func, ast.Name) \
                and f.value.func.id == "super" and self.cls:
            callee = ["super", self.cls, f.attr]
        else:
            callee = self.vd(f)
        if callee is None or callee[0] == "ref" and callee[1].split(".")[0] in _NOT_PROJECT:
            return
        if _root(callee) == "param":
            return  # a method of a value handed in (`x.view(...)`, `loss.mean()`): nothing to link
        args = [self.vd(a) if not isinstance(a, ast.Starred) else None for a in c.args]
        akeys = [self._effect_key(a) if not isinstance(a, ast.Starred) else None for a in c.args]
        kw = {k.arg: v for k in c.keywords if k.arg and (v := self.vd(k.value)) is not None}
        kwkeys = {k.arg: v for k in c.keywords if k.arg and (v := self._effect_key(k.value)) is not None}
        # compact: trailing unknowns carry nothing (a missing argument reads as unknown too)
        while args and args[-1] is None:
            args.pop()
        while akeys and akeys[-1] is None:
            akeys.pop()
        # what the call passes: [number of positional arguments, keyword names], or None with
        # `*args`/`**kw` (a parameter may be given): the linker applies a default only where it is left out
        self.calls.append([callee, args, kw, sp, flags, akeys, kwkeys, _passed(c)])

    def _bound_call_span(self, node, at):
        """The span of the call a backwarded value is exactly (`loss = crit(out, y); loss.backward()`,
        `crit(out, y).backward()`): links a backward to the loss call it runs on. A name bound several
        times (two loops reusing `loss`) is read from its last binding before the backward."""
        if isinstance(node, ast.Name):
            vals = self.assign_nodes.get(node.id) or []
            if any(v is None or self._rebinds(v, node.id) for v in vals):
                return None
            pos = (at.lineno, at.col_offset)
            before = [v for v in vals if isinstance(v, ast.AST) and (v.lineno, v.col_offset) < pos]
            if not before:
                return None
            node = max(before, key=lambda v: (v.lineno, v.col_offset))
        return _span(self.s.src, node) if isinstance(node, ast.Call) else None

    def _arg_data(self, node):
        """For `loss` bound to `helper(a, b)`: per argument, True when it is plain data (a loop
        variable, a tensor constructor, an element of one), False when it may carry a graph."""
        if isinstance(node, ast.Name):
            vals = self.assign_nodes.get(node.id)
            if not (vals and len(vals) == 1 and vals[0] is not None):
                return None
            node = vals[0]
        if not isinstance(node, ast.Call):
            return None
        return [self._is_data(a) for a in node.args]

    def _is_data(self, node, depth=0) -> bool:
        if depth > 4:
            return False
        if isinstance(node, ast.Name):
            vals = self.assign_nodes.get(node.id)
            if vals and all(v is None for v in vals):
                return True  # a loop/with target: a batch from a loader
            if vals and len(vals) == 1:
                return self._is_data(vals[0], depth + 1)
            return False
        if isinstance(node, (ast.Subscript, ast.Starred)):
            return self._is_data(node.value, depth + 1)
        if isinstance(node, ast.Call):
            q = self.s.qual(node.func) or ""
            if q in _DATA_CTORS:
                return True
            if isinstance(node.func, ast.Attribute) and node.func.attr in SAME_INSTANCE_METHODS | {"long", "view", "reshape"}:
                return self._is_data(node.func.value, depth + 1)
        return False

    def _rebinds(self, v, name: str) -> bool:
        """`name = name.to(device)` / `name = name.view(-1, n)` / `name = DataParallel(name)`."""
        cur = v
        for _ in range(6):
            if isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) \
                    and cur.func.attr in SAME_INSTANCE_METHODS | SHAPE_METHODS:
                cur = cur.func.value
            elif isinstance(cur, ast.Call) and cur.args and self.s.qual(cur.func) in WRAPPERS:
                cur = cur.args[0]
            else:
                break
        return isinstance(cur, ast.Name) and cur.id == name and cur is not v

    def _model_calls_of(self, inp) -> list:
        """[(model vd, element)] for every binding of `inp` that is a model's output (an if/else may
        bind it from two calls); [] when one of them is something else."""
        if isinstance(inp, ast.Name):
            vals = [v for v in self.assign_nodes.get(inp.id) or [] if not self._rebinds(v, inp.id)]
            if not vals or len(vals) > 4 or any(v is None for v in vals):
                return []
        else:
            vals = [inp]
        out = []
        for v in vals:
            m = self._model_call_of(v)
            if m is None:
                return []
            out.append((m, self._elt))
        return out

    def _model_call_of(self, inp):
        """The model whose call produced `inp`: `model(x)`, `out` bound to `model(x)`, `self(x)`."""
        node = inp
        self._elt = None
        for _ in range(3):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in SHAPE_METHODS:
                node = node.func.value  # out.view(-1, n): the same values, reshaped
                continue
            if not isinstance(node, ast.Name):
                break
            vals = [v for v in self.assign_nodes.get(node.id) or [] if not self._rebinds(v, node.id)]
            if not (vals and len(vals) == 1 and vals[0] is not None):
                return None
            node = vals[0]
        if isinstance(node, _Elt):
            self._elt = node.index
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Call) \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
            self._elt = node.slice.value  # model(x)[0]
            node = node.value
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "forward":
                return self.vd(f.value)
            if isinstance(f, ast.Name) or isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and f.value.id == "self":
                return self.vd(f)
        return None

    # -- what it returns: project/returns.py ------------------------------------------------------
    def _returns(self) -> None:
        from gradpath.analysis.project import returns
        returns.analyse(self)

    def _defaults(self) -> dict:
        """Parameter -> vd of its default (`loss_fn=nn.CrossEntropyLoss()`, `head="softmax"`), read
        where the function is defined (the module's bindings, not the function's own)."""
        if self.node is None:
            return {}
        a = self.node.args
        pos = a.posonlyargs + a.args
        pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) if a.defaults else []
        pairs += [(p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
        scope = getattr(self.s, "module_fn", None) or self
        out = {}
        for p, d in pairs:
            v = scope.vd(d)
            if v is not None:
                out[p.arg] = v
        return out

    def summary(self) -> dict:
        return {"params": self.params, "defaults": self._defaults(),
                "nkwonly": len(self.node.args.kwonlyargs) if self.node is not None else 0,
                "effects": self.effects, "loss_uses": self.loss_uses,
                "calls": self.calls, "logs": self.logs, "returns": self.returns, "ret_act": self.ret_act,
                "ret_cut": self.ret_cut, "ret_sub": self.ret_sub, "backwards": self.backwards,
                "line": getattr(self.node, "lineno", 0)}


_BUILTINS = frozenset(dir(builtins))


def _members(vds: list) -> list:
    """A collection's member vds without its string literals (names and paths in a settings table:
    no question reads them; the keys of a dict of classes are kept apart)."""
    return [None if v is not None and v[0] == "lit" else v for v in vds]


def _passed(c: ast.Call):
    """What a call passes, compactly: the number of positional arguments, [that, keyword names]
    with keywords, None with `*args`/`**kw` (a parameter may be given). See passed_of."""
    if any(isinstance(a, ast.Starred) for a in c.args) or any(k.arg is None for k in c.keywords):
        return None
    return [len(c.args), [k.arg for k in c.keywords]] if c.keywords else len(c.args)


def passed_of(rec) -> tuple | None:
    """(positional count, keyword names) from a call record's `passed`, or None (not known)."""
    if rec is None:
        return None
    return (rec, ()) if isinstance(rec, int) else (rec[0], tuple(rec[1]))

_DATA_CTORS = {"torch.randn", "torch.rand", "torch.randint", "torch.zeros", "torch.ones", "torch.tensor",
               "torch.as_tensor", "torch.from_numpy", "torch.full", "torch.arange", "torch.empty"}

_NOT_PROJECT = {"torch", "numpy", "np", "os", "sys", "math", "time", "logging", "print", "json", "random",
                "torchvision", "itertools", "collections", "functools", "tqdm"}


class _Elt:
    """Element `index` of what the call `value` returns (a tuple-unpacking assignment)."""
    __slots__ = ("value", "index")

    def __init__(self, value, index):
        self.value, self.index = value, index


def _root(vd) -> str | None:
    while vd and vd[0] in ("attr", "call", "item"):
        vd = vd[1]
    return vd[0] if vd else None


def _names_in(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_main_guard(st: ast.If) -> bool:
    t = st.test
    return isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
