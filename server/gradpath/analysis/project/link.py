"""Questions across modules, answered from the summaries (see summaries.py for what they hold).

"What does `self.criterion` hold in this method", "does `Net.forward` end in a softmax", "does
`train_one_epoch` step its `optimizer` argument". A function's parameter takes what its callers in
the project pass when they all agree; unknown stays unknown (a rule that cannot be sure is silent).

Values (what `Linker.eval` returns, in a frozenset):
  ("cls", path, name)    a class of the project        ("inst", path, name)  an instance of it
  ("fn", path, qualname) a function or method           ("mod", path)         a module
  ("ext", qn)            a name outside the project     ("extinst", qn)       what calling it gave
  ("reg", path, name)    a registry (classes registered with a decorator on it)
  ("coll", members)      a dict/list/tuple literal      ("lit", value)  a str/int/float/bool literal
  UNKNOWN
"""
from __future__ import annotations

import os

from gradpath.analysis.project.summaries import passed_of

UNKNOWN = ("?",)
_U = frozenset([UNKNOWN])
MAX_EVAL_DEPTH = 12
MAX_CALL_DEPTH = 3

LOSS_KINDS = {
    "torch.nn.CrossEntropyLoss": "ce", "torch.nn.functional.cross_entropy": "ce",
    "torch.nn.NLLLoss": "nll", "torch.nn.functional.nll_loss": "nll",
    "torch.nn.BCEWithLogitsLoss": "bcel", "torch.nn.functional.binary_cross_entropy_with_logits": "bcel",
    "torch.nn.BCELoss": "bce", "torch.nn.functional.binary_cross_entropy": "bce",
}
_MODULE_BASES = ("torch.nn.Module", "torch.nn.modules.module.Module", "pytorch_lightning.LightningModule",
                 "lightning.LightningModule", "lightning.pytorch.LightningModule",
                 "pytorch_lightning.core.LightningModule", "lightning.pytorch.core.LightningModule")


def canon(qn: str) -> str:
    """`torch.nn.modules.loss.CrossEntropyLoss` and `nn.CrossEntropyLoss` spellings to one."""
    if qn.startswith("torch.nn.modules."):
        return "torch.nn." + qn.rsplit(".", 1)[-1]
    if qn.startswith("torch.nn.functional."):
        return qn
    return qn


class Linker:
    """Read-only view over an index and its summaries (path -> summary dict)."""

    def __init__(self, index, summaries: dict[str, dict | None]):
        self.index = index
        self.s = summaries
        self._ref_memo: dict[tuple, frozenset] = {}
        self._busy: set = set()
        self._calls_by_target: dict | None = None
        self._uses: dict | None = None
        self._backwards: dict | None = None
        self._subclasses: dict | None = None
        self._registries: dict | None = None
        self._building_calls = False
        self._class_call_sites: dict | None = None
        self._building_class_calls = False
        self._memo: dict = {}  # attr_of / _targets / effects answers

    # -- module lookups --------------------------------------------------------------------------
    def summary(self, path: str) -> dict | None:
        return self.s.get(path)

    def resolve(self, qn: str, path: str, depth: int = 0) -> frozenset:
        key = (qn, path)
        if key in self._ref_memo:
            return self._ref_memo[key]
        if key in self._busy or depth > MAX_EVAL_DEPTH:
            return _U
        self._busy.add(key)
        try:
            r = self._resolve(qn, path, depth)
        finally:
            self._busy.discard(key)
        self._ref_memo[key] = r
        return r

    def _resolve(self, qn: str, path: str, depth: int) -> frozenset:
        sp = self.index.split_ref(qn, path)
        if sp is None:
            return frozenset([("ext", canon(qn))]) if not qn.startswith((".", "@")) else _U
        mpath, parts = sp
        cur = frozenset([("mod", mpath)])
        for part in parts:
            nxt = set()
            for v in cur:
                nxt |= self.member(v, part, depth + 1)
            cur = frozenset(nxt) or _U
        return cur

    def member(self, v: tuple, name: str, depth: int) -> frozenset:
        """What `name` is on value v (a module's global, a class's method, an instance's attribute)."""
        if v[0] == "mod":
            return self._module_member(v[1], name, depth)
        if v[0] in ("cls", "inst", "self"):
            m = self.find_method(v[1], v[2], name)
            if m is not None:
                return frozenset([("fn",) + m])
            if v[0] == "cls":
                return _U
            return self.attr_of(v[1], v[2], name, depth, subclasses=v[0] == "self")
        if v[0] == "ext":
            return frozenset([("ext", canon(v[1] + "." + name))])
        return _U

    def _module_member(self, mpath: str, name: str, depth: int) -> frozenset:
        sm = self.s.get(mpath)
        if sm is None:
            # a package folder without a summary (namespace) or a module that does not parse
            sub = self.index.resolve_relative(1, name, mpath) if mpath.endswith("__init__.py") else None
            return frozenset([("mod", sub)]) if sub else _U
        if name in sm["classes"]:
            return frozenset([("cls", mpath, name)])
        if name in sm["functions"] and name != "<module>":
            return frozenset([("fn", mpath, name)])
        if name in sm["globals"]:
            out = set()
            vds = sm["globals"][name]
            for vd in vds:
                out |= self.eval(vd, mpath, depth + 1)
            reg = self.registries().get((mpath, name))
            if reg:
                out.discard(UNKNOWN)
                out.add(("reg", mpath, name))
            if len(vds) != 1:
                out.add(UNKNOWN)
            return frozenset(out) or _U
        if name in sm["imports"]:
            return self.resolve(sm["imports"][name], mpath, depth + 1)
        if os.path.basename(mpath) == "__init__.py":
            sub = self.index.resolve_relative(1, name, mpath)
            if sub is not None:
                return frozenset([("mod", sub)])
        for star in sm.get("star", ()):
            r = self.resolve(star + ("." if not star.endswith(".") else "") + name, mpath, depth + 1)
            if UNKNOWN not in r and not all(x[0] == "ext" for x in r):
                return r
        return _U

    # -- classes -----------------------------------------------------------------------------------
    def cls_info(self, path: str, name: str) -> dict | None:
        sm = self.s.get(path)
        return sm["classes"].get(name) if sm else None

    def bases(self, path: str, name: str) -> list[tuple]:
        info = self.cls_info(path, name)
        if info is None:
            return []
        out = []
        for b in info["bases"]:
            if b == "?":
                out.append(UNKNOWN)
                continue
            r = self.resolve(b, path)
            cls = [x for x in r if x[0] == "cls"]
            if cls:
                out.append(cls[0])
            elif r:
                out.append(next(iter(r)))
        return out

    def mro(self, path: str, name: str, limit: int = 12) -> list[tuple]:
        """Project classes first to last (depth-first, good enough for single inheritance), then
        the external bases (("ext", qn)) met."""
        out, seen, stack = [], set(), [("cls", path, name)]
        while stack and len(out) < limit:
            c = stack.pop(0)
            if c in seen:
                continue
            seen.add(c)
            out.append(c)
            if c[0] == "cls":
                stack[0:0] = self.bases(c[1], c[2])
        return out

    def is_module_class(self, path: str, name: str) -> bool:
        for c in self.mro(path, name):
            if c[0] == "ext" and (c[1] in _MODULE_BASES or c[1].startswith("torch.nn.") and c[1][9:10].isupper()):
                return True
        return False

    def ext_bases(self, path: str, name: str) -> list[str]:
        return [c[1] for c in self.mro(path, name) if c[0] == "ext"]

    def find_method(self, path: str, name: str, meth: str) -> tuple | None:
        for c in self.mro(path, name):
            if c[0] != "cls":
                if c == UNKNOWN:
                    return None
                continue
            info = self.cls_info(c[1], c[2])
            if info and meth in info["methods"]:
                return c[1], f"{c[2]}.{meth}"
        return None

    def subclasses(self) -> dict:
        if self._subclasses is None:
            d: dict = {}
            for p, sm in self.s.items():
                if not sm:
                    continue
                for cname in sm["classes"]:
                    for b in self.bases(p, cname):
                        if b[0] == "cls":
                            d.setdefault((b[1], b[2]), []).append((p, cname))
            self._subclasses = d
        return self._subclasses

    def attr_of(self, path: str, name: str, attr: str, depth: int = 0, subclasses: bool = False) -> frozenset:
        key = ("attr", path, name, attr, subclasses)
        got = self._memo.get(key)
        if got is None:
            if key in self._busy:
                return _U
            self._busy.add(key)
            try:
                got = self._attr_of(path, name, attr, depth, subclasses)
            finally:
                self._busy.discard(key)
            self._memo[key] = got
        return got

    def _attr_of(self, path: str, name: str, attr: str, depth: int, subclasses: bool) -> frozenset:
        """What `self.<attr>` holds for instances of a class: every assignment in every method of the
        class and its project bases (and, for `self` inside a base class, of its subclasses)."""
        out = set()
        found = False
        classes = [c for c in self.mro(path, name) if c[0] == "cls"]
        if subclasses:
            todo = [(path, name)]
            while todo and len(classes) < 30:
                for sub in self.subclasses().get(todo.pop(), []):
                    c = ("cls",) + sub
                    if c not in classes:
                        classes.append(c)
                        todo.append(sub)
        for c in classes:
            info = self.cls_info(c[1], c[2])
            if info and attr in info["attrs"]:
                found = True
                for vd in info["attrs"][attr]:
                    out |= self.eval(vd, c[1], depth + 1)
        if not found:
            return _U
        return frozenset(out)

    # -- values ------------------------------------------------------------------------------------
    def eval(self, vd, path: str, depth: int = 0) -> frozenset:
        if vd is None or depth > MAX_EVAL_DEPTH:
            return _U
        k = vd[0]
        if k == "none":
            return frozenset()
        if k == "lit":
            return frozenset([("lit", vd[1])])
        if k == "any":
            out = set()
            for m in vd[1]:
                out |= self.eval(m, path, depth + 1)
            return frozenset(out) or _U
        if k == "ref":
            return self.resolve(vd[1], path, depth)
        if k == "self":
            sp = self.index.split_ref(vd[1], path)
            return frozenset([("self", sp[0], ".".join(sp[1]))]) if sp else _U
        if k == "attr":
            out = set()
            for v in self.eval(vd[1], path, depth + 1):
                out |= self.member(v, vd[2], depth + 1)
            return frozenset(out) or _U
        if k == "call":
            out = set()
            for v in self.eval(vd[1], path, depth + 1):
                if v[0] == "cls":
                    out.add(("inst", v[1], v[2]))
                elif v[0] == "fn":
                    out |= self.returns_of(v[1], v[2], depth + 1)
                elif v[0] == "ext":
                    out.add(("extinst", v[1]))
                elif v[0] == "coll":
                    out.add(UNKNOWN)
                else:
                    out.add(UNKNOWN)
            return frozenset(out) or _U
        if k == "param":
            return self.param_value(path, vd[1], vd[2], depth + 1)
        if k == "item":
            out = set()
            container = self.eval(vd[1], path, depth + 1)
            has_reg = any(v[0] == "reg" for v in container)
            key = self._lit_key(vd[2], path, depth) if len(vd) > 2 else None
            for v in container:
                if has_reg and v[0] in ("inst", "extinst"):
                    continue  # the registry object itself: its items are the registered classes
                if v[0] == "coll" and key is not None and len(v) > 2 and key in v[2]:
                    out |= v[2][key]  # MODELS[name] with name known ("mlp", a default): that entry
                elif v[0] == "coll":
                    out |= v[1]
                elif v[0] == "reg":
                    out |= {("cls",) + c for c in self.registries()[(v[1], v[2])]}
                else:
                    out.add(UNKNOWN)
            return frozenset(out) or _U
        if k == "coll":
            members = set()
            keyed: dict = {}
            keys = vd[2] if len(vd) > 2 else [None] * len(vd[1])
            for m, key in zip(vd[1], keys):
                got = self.eval(m, path, depth + 1)
                members |= got
                if key is not None:
                    keyed[key] = keyed.get(key, frozenset()) | got
            if len(vd) > 2 and keyed and all(key is not None for key in keys):
                return frozenset([("coll", frozenset(members), _Keyed(keyed))])
            return frozenset([("coll", frozenset(members))])
        return _U

    def _lit_key(self, kvd, path: str, depth: int):
        """The literal a key vd stands for, when it is one (every caller agreeing, or the default)."""
        got = self.eval(kvd, path, depth + 1)
        if len(got) == 1:
            (v,) = got
            if v[0] == "lit":
                return v[1]
        return None

    def returns_of(self, path: str, fq: str, depth: int) -> frozenset:
        sm = self.s.get(path)
        fn = sm["functions"].get(fq) if sm else None
        if not fn or not fn["returns"]:
            return _U
        out = set()
        for vd in fn["returns"]:
            out |= self.eval(vd, path, depth + 1)
        return frozenset(out)

    def registries(self) -> dict:
        if self._registries is None:
            d: dict = {}
            for p, sm in self.s.items():
                if not sm:
                    continue
                for reg, names in sm.get("registries", {}).items():
                    sp = self.index.split_ref(reg, p)
                    if sp is None or len(sp[1]) != 1:
                        continue
                    key = (sp[0], sp[1][0])
                    sm2 = self.s.get(sp[0])
                    if sm2 and sp[1][0] not in sm2["globals"] and sp[1][0] in sm2["imports"]:
                        r = self.index.split_ref(sm2["imports"][sp[1][0]], sp[0])
                        if r and len(r[1]) == 1:
                            key = (r[0], r[1][0])
                    d.setdefault(key, []).extend((p, n) for n in names)
            self._registries = d
        return self._registries

    # -- callers ---------------------------------------------------------------------------------
    def calls_by_target(self) -> dict:
        """(path, function qualname) -> [(caller path, args, kwargs, offset, what it passes:
        [positional count, keyword names] or None)] over the project; a
        class instantiation counts as a call of its (inherited) __init__ with offset 1 (self)."""
        if self._calls_by_target is None:
            if self._building_calls:
                return None  # asked while building it (a callee's value depends on a parameter)
            self._building_calls = True
            try:
                d: dict = {}
                for p, sm in self.s.items():
                    if not sm:
                        continue
                    for fq, fn in sm["functions"].items():
                        for callee, args, kw, _sp, _flags, _ak, _kk, passed in fn["calls"]:
                            for t, off in self._targets(callee, p):
                                d.setdefault(t, []).append((p, args, kw, off, passed))
                self._calls_by_target = d
            finally:
                self._building_calls = False
            # values computed while the call table was missing may have been cut short
            self._ref_memo.clear()
            self._memo.clear()
        return self._calls_by_target

    def _targets(self, callee, path: str) -> list[tuple]:
        key = ("targets", path, repr(callee))
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self._targets_of(callee, path)
        return got

    def _targets_of(self, callee, path: str) -> list[tuple]:
        out = []
        if callee[0] == "super":
            sp = self.index.split_ref(callee[1], path)
            if sp:
                bases = self.bases(sp[0], ".".join(sp[1]))
                for b in bases[:1]:
                    if b[0] == "cls":
                        m = self.find_method(b[1], b[2], callee[2])
                        if m:
                            out.append((m, 1))
            return out
        for v in self.eval(callee, path):
            if v[0] == "fn":
                sm = self.s.get(v[1])
                fn = sm["functions"].get(v[2]) if sm else None
                is_method = "." in v[2]
                # bound method (self.train_epoch(...), obj.fit()): skip `self`
                off = 1 if is_method and fn and fn["params"][:1] == ["self"] and callee[0] == "attr" else 0
                out.append(((v[1], v[2]), off))
            elif v[0] == "cls":
                m = self.find_method(v[1], v[2], "__init__")
                if m:
                    out.append((m, 1))
        return out

    def param_value(self, path: str, fq: str, pname: str, depth: int) -> frozenset:
        """What callers pass for a parameter, when every caller in the project agrees; a caller that
        leaves it out passes its default (`loss_fn=nn.CrossEntropyLoss()`, `head="softmax"`)."""
        sp = self.index.split_ref(fq, path)
        if sp is None:
            return _U
        fpath, fname = sp[0], ".".join(sp[1])
        sm = self.s.get(fpath)
        fn = sm["functions"].get(fname) if sm else None
        if not fn or pname not in fn["params"]:
            return _U
        if pname == "self":
            return _U
        idx = fn["params"].index(pname)
        table = self.calls_by_target()
        if table is None:
            return _U
        calls = table.get((fpath, fname), [])
        vals = None
        default = fn.get("defaults", {}).get(pname)
        kwonly = idx >= len(fn["params"]) - fn.get("nkwonly", 0)
        for cpath, args, kw, off, rec in calls:
            passed = passed_of(rec)
            i = idx - off
            vpath = cpath
            if pname in kw:
                vd = kw[pname]
            elif 0 <= i < len(args):
                vd = args[i]
            elif default is not None and passed is not None and pname not in passed[1] \
                    and (kwonly or i >= passed[0]):
                vd, vpath = default, fpath  # left out: the default, read where the function is defined
            else:
                return _U  # an argument we cannot read, *args, or no default: not known
            v = frozenset(("inst",) + x[1:] if x[0] == "self" else x for x in self.eval(vd, vpath, depth + 1))
            if vals is None:
                vals = v
            elif v != vals:
                return _U
        if vals is None:
            vals = self._framework_param(fpath, fname, pname, depth)
        return vals if vals is not None else _U

    def _framework_param(self, fpath, fname, pname, depth):
        """A `transformers.Trainer` subclass's compute_loss(self, model, inputs): `model` is the
        model the trainer was built with."""
        if "." not in fname or pname != "model":
            return None
        cls, meth = fname.rsplit(".", 1)
        if meth not in ("compute_loss", "training_step", "prediction_step"):
            return None
        if not any(b.startswith("transformers.") and b.endswith("Trainer") for b in self.ext_bases(fpath, cls)):
            return None
        if self._building_calls or (fpath, fname) in self._busy:
            return _U
        self._busy.add((fpath, fname))
        try:
            return self._instantiations_arg(fpath, cls, depth)
        finally:
            self._busy.discard((fpath, fname))

    def _instantiations_arg(self, fpath, cls, depth):
        """What every instantiation of the class in the project passes as its model (the first
        argument or `model=`): one answer when they agree. Read from an index of class calls built
        once per linker, and remembered per class (it was a walk over every call of the project,
        evaluating each callee, per question: minutes on trl's trainers)."""
        key = ("inst-arg", fpath, cls)
        if key in self._memo:
            return self._memo[key]
        sites = self._class_calls()
        if sites is None:
            return _U
        vals = None
        for p, args, kw in sites.get((fpath, cls), ()):
            vd = kw.get("model", args[0] if args else None)
            # a fixed depth: the answer must not depend on which question asked it first
            v = self.eval(vd, p, 1)
            if vals is None:
                vals = v
            elif v != vals:
                vals = _U
                break
        self._memo[key] = vals
        return vals

    def _class_calls(self) -> dict | None:
        """(path, class) -> [(caller path, args, kwargs)] for every call in the project whose
        callee is that class; None while it is being built (a callee's value asked for it)."""
        if self._class_call_sites is None:
            if self._building_class_calls or self._building_calls:
                return None
            self._building_class_calls = True
            try:
                d: dict = {}
                for p, sm in self.s.items():
                    if not sm:
                        continue
                    for fn in sm["functions"].values():
                        for callee, args, kw, *_ in fn["calls"]:
                            for v in self.eval(callee, p):
                                if v[0] == "cls":
                                    d.setdefault((v[1], v[2]), []).append((p, args, kw))
                self._class_call_sites = d
            finally:
                self._building_class_calls = False
        return self._class_call_sites

    # -- questions the rules ask -------------------------------------------------------------------
    def loss_kind(self, vals: frozenset):
        """"ce"/"nll"/"bcel"/"bce" when every value is that torch loss; ("cls", path, name) when
        every value is an instance of one project loss class; else None."""
        kinds = set()
        for v in vals:
            if v[0] == "extinst" and canon(v[1]) in LOSS_KINDS:
                kinds.add(LOSS_KINDS[canon(v[1])])
            elif v[0] == "ext" and v[1] in LOSS_KINDS and v[1].startswith("torch.nn.functional."):
                kinds.add(LOSS_KINDS[v[1]])
            elif v[0] == "inst" and self.is_module_class(v[1], v[2]):
                kinds.add(("cls", v[1], v[2]))
            else:
                return None
        return kinds.pop() if len(kinds) == 1 else None

    def loss_uses(self) -> list[dict]:
        """Every call of a loss on a model's output in the project, linked."""
        if self._uses is None:
            out = []
            for p, sm in self.s.items():
                if not sm:
                    continue
                for fq, fn in sm["functions"].items():
                    for loss_vd, model_vd, inp_sp, loss_sp, flags, elt, *_extra in fn["loss_uses"]:
                        lv = self.eval(loss_vd, p)
                        kind = self.loss_kind(lv)
                        if kind is None:
                            # a loss module called through its forward: criterion.forward(out, y)
                            continue
                        mv = self.eval(model_vd, p)
                        models = [(v[1], v[2]) for v in mv if v[0] in ("inst", "self")]
                        if not models or len(models) != len(mv):
                            continue
                        out.append({"kind": kind, "models": models, "path": p, "fn": fq, "input": inp_sp,
                                    "loss": loss_sp, "nograd": "n" in flags, "elt": elt})
            self._uses = out
        return self._uses

    def forward_owner(self, path: str, name: str) -> tuple | None:
        m = self.find_method(path, name, "forward")
        if m is None:
            return None
        return m[0], m[1].rsplit(".", 1)[0]

    def forward_act(self, path: str, name: str) -> dict | None:
        """How the forward of a module class ends: {"act": "softmax"|"sigmoid"|"log_softmax", "span",
        "text", "input", "owner": (path, class)}; a layer call (`self.softmax(x)`, `self.net(x)`) is
        followed to the layer (`nn.Softmax`, the last element of an `nn.Sequential`)."""
        own = self.forward_owner(path, name)
        if own is None:
            return None
        info = self.cls_info(*own)
        fa = info.get("forward") if info else None
        if not fa:
            return None
        if fa.get("act"):
            return dict(fa, owner=own)
        layer = fa.get("layer")
        if layer:
            # self.act(x) with self.act = nn.Softmax(1); self.net(x) ending in nn.Sequential(..., nn.Softmax(1))
            for c in self.mro(*own):
                if c[0] != "cls":
                    continue
                last = (self.cls_info(c[1], c[2]) or {}).get("act_layers", {}).get(layer)
                if last:
                    out = dict(fa, act=last[0], owner=(c[1], c[2]) if last[1] else own)
                    if last[1]:
                        # the finding goes on the activation layer (what the fix removes), not on
                        # the `return` of the forward that calls the layer
                        out.update(span=last[1], input=None, returned=fa.get("span"), layer_span=True)
                    return out
        return None

    def backward_callers(self) -> dict:
        """(path, function) -> [(path, backward span)] where the function's result is backward-ed
        (`loss = compute_loss(out, y); loss.backward()`)."""
        if self._backwards is None:
            d: dict = {}
            for p, sm in self.s.items():
                if not sm:
                    continue
                for fn in sm["functions"].values():
                    for loss_vd, sp, flags, data, *_call in fn["backwards"]:
                        if not loss_vd or loss_vd[0] != "call":
                            continue
                        for v in self.eval(loss_vd[1], p):
                            if v[0] == "fn":
                                d.setdefault((v[1], v[2]), []).append((p, sp, data))
            self._backwards = d
        return self._backwards

    # -- helper effects, for the training-loop facts -------------------------------------------
    def effects(self, path: str, fq: str, depth: int = 0, seen=frozenset()) -> list | None:
        key = ("effects", path, fq, depth)
        if key in self._memo:
            return self._memo[key]
        got = self._effects(path, fq, depth, seen)
        if not seen:  # inside a cycle a result may be cut short: keep only top-level answers
            self._memo[key] = got
        return got

    def _effects(self, path: str, fq: str, depth: int, seen) -> list | None:
        """The ordered effects of calling function fq: [kind, key, flags, (path, span)] with keys
        rooted in its parameters or in `self`; None when they cannot be told (a conditional effect, a
        step with a closure, too deep)."""
        if depth > MAX_CALL_DEPTH or (path, fq) in seen:
            return None
        sm = self.s.get(path)
        fn = sm["functions"].get(fq) if sm else None
        if fn is None:
            return None
        items = [("e", e) for e in fn["effects"]] + [("c", c) for c in fn["calls"]]
        items.sort(key=lambda it: (it[1][3][2], it[1][3][3]) if it[0] == "c" else (it[1][2][2], it[1][2][3]))
        out = []
        for tag, it in items:
            if tag == "e":
                kind, key, sp, flags = it
                if "c" in flags or "x" in flags:
                    if kind in ("zero_grad", "step", "eval", "train"):
                        return None
                out.append([kind, key, flags, (path, sp)])
                continue
            callee, args, kw, sp, flags, akeys, kwkeys, _passed = it
            targets = self._targets(callee, path)
            keys = [k for k in list(akeys) + list(kwkeys.values()) if k]
            if not targets and keys:
                # a call we cannot follow that is handed the parameters (or self): it may do anything
                # to them, as loops.py's opaque calls
                out.append(["opaque", None, flags, (path, sp), keys])
                continue
            for (tp, tq), off in targets:
                sub = self.effects(tp, tq, depth + 1, seen | {(path, fq)})
                if sub is None:
                    continue
                if not sub:
                    continue
                if "c" in flags and any(e[0] in ("zero_grad", "step", "eval", "train", "backward") for e in sub):
                    return None  # a conditional call that orders a training step: cannot be told
                tfn = self.s[tp]["functions"][tq]
                mapping = {}
                params = tfn["params"]
                if off:
                    mapping["self"] = "self" if callee[0] in ("super",) or (
                        callee[0] == "attr" and callee[1] and callee[1][0] == "self") else None
                    params = params[1:]
                for pname, k in zip(params, akeys):
                    mapping[pname] = k
                for pname, k in kwkeys.items():
                    mapping[pname] = k
                def tr(key):
                    if key is None:
                        return None
                    head, _, rest = key.partition(".")
                    base = mapping.get(head)
                    return (base + ("." + rest if rest else "")) if base else None
                for e in sub:
                    kind, key, fl, origin = e[:4]
                    ne = [kind, tr(key), fl + ("l" if "l" in flags else ""), origin]
                    if kind == "opaque":
                        ks = [tr(k) for k in e[4]]
                        if not any(ks):
                            continue  # handed something the caller cannot name: not its business
                        ne.append([k for k in ks if k])
                    out.append(ne)
                break
        return out


class _Keyed(dict):
    """A dict literal's entries by key, hashable (it sits inside a value's frozenset)."""

    def __hash__(self):
        return hash(frozenset(self.items()))

    def __eq__(self, other):
        return isinstance(other, _Keyed) and dict.__eq__(self, other)


def finding_sites(lk: "Linker") -> set[str]:
    """The modules where a cross-module finding may land (the editor analyses these, and only these,
    when the index is built, for the Problems panel): the module of a model class's forward whose
    output a loss in another module takes, a loss module fed by another module, a helper whose cut
    result is backwarded elsewhere, a loss function fed a model's output from another module, a
    module class whose forward returns a cut value that a model's loss elsewhere is computed from,
    and a module whose loop calls a function of another module (or
    an inherited method) that trains, clears, steps or switches modes."""
    out: set[str] = set()
    for use in lk.loss_uses():
        for mp, mc in use["models"]:
            own = lk.forward_owner(mp, mc)
            if own is not None and own[0] != use["path"]:
                out.add(own[0])
        if isinstance(use["kind"], tuple) and use["kind"][1] != use["path"]:
            out.add(use["kind"][1])
    for (p, _fq), users in lk.backward_callers().items():
        if any(u[0] != p for u in users):
            out.add(p)
    from gradpath.analysis.project.fed import cut_forward_sites, fed_losses
    for (p, _fq), uses in fed_losses(lk).items():
        if any(u["path"] != p and not u["nograd"] for u in uses):
            out.add(p)  # a loss (or a model's forward) fed a model's output from another module
    out |= cut_forward_sites(lk)
    for p, sm in lk.s.items():
        if not sm or p in out:
            continue
        for fq, fn in sm["functions"].items():
            hit = False
            for callee, *_rest in fn["calls"]:
                flags = _rest[3]
                if "l" not in flags and fq != "<module>" and "." not in fq:
                    continue
                for (tp, tq), _off in lk._targets(callee, p):
                    if tp != p and lk.effects(tp, tq):
                        hit = True
                        break
                if hit:
                    break
            if hit:
                out.add(p)
                break
    return out
