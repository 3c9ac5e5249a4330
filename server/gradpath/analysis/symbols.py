"""Import aliases -> qualified names; classes defined in the file and their bases.

`Symbols.qualname(expr)` answers what a Name/Attribute chain refers to, e.g. with
`import torch.optim as o`, `o.Adam` -> "torch.optim.Adam"; with `from torch.nn import Linear as L`,
`L` -> "torch.nn.Linear". Deep paths are normalised (`torch.nn.modules.linear.Linear` ->
`torch.nn.Linear`, `torch.optim.adam.Adam` -> `torch.optim.Adam`).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

# Paths that are the same object as a shorter public name.
_CANONICAL_PREFIXES = (
    ("torch.nn.modules.", "torch.nn."),
    ("torch.optim.", "torch.optim."),
)
_FUNCTIONAL = ("torch.nn.functional",)


def canonical(qn: str) -> str:
    """Normalise `torch.nn.modules.linear.Linear` -> `torch.nn.Linear`,
    `torch.optim.adam.Adam` -> `torch.optim.Adam`, `torch.optim.lr_scheduler.StepLR` kept."""
    if qn.startswith("torch.nn.modules."):
        return "torch.nn." + qn.rsplit(".", 1)[-1]
    if qn.startswith("torch.optim.") and qn.count(".") >= 3 and not qn.startswith("torch.optim.lr_scheduler"):
        last = qn.rsplit(".", 1)[-1]
        if last[:1].isupper():
            return "torch.optim." + last
    if qn.startswith("torch.nn.parameter."):
        return "torch.nn." + qn.rsplit(".", 1)[-1]
    if qn.startswith("torch.autograd.grad_mode."):
        return "torch." + qn.rsplit(".", 1)[-1]
    return qn


_STMT_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")
_stmt_fields_of: dict = {}  # node type -> its fields that hold statements (or handlers/cases), in _fields order


def walk_statements(tree: ast.AST):
    """The statements of `tree` (and the except handlers / match cases between them) in exactly the
    order `ast.walk` visits them (breadth first, fields in order), without visiting expressions:
    statements only ever sit under statements, handlers and cases, so leaving out the subtrees that
    hold none keeps the relative order of the rest."""
    from collections import deque
    todo = deque([tree])
    fields_of = _stmt_fields_of
    while todo:
        node = todo.popleft()
        t = node.__class__
        fields = fields_of.get(t)
        if fields is None:
            fields = fields_of[t] = tuple(f for f in t._fields if f in _STMT_FIELDS)
        for name in fields:
            value = getattr(node, name, None)
            if value.__class__ is list:
                todo.extend(value)
        yield node


@dataclass
class ClassInfo:
    name: str
    node: ast.ClassDef
    bases: list[str]  # qualified names of the bases (local classes by their plain name)


@dataclass
class Symbols:
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    # names imported from modules that are not torch (candidates for jedi resolution)
    foreign_imports: dict[str, str] = field(default_factory=dict)
    # extra facts from jedi: local name -> list of qualified base names (e.g. ["torch.nn.Module"])
    resolved_bases: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, tree: ast.Module) -> "Symbols":
        s = cls()
        for node in walk_statements(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        s.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        s.aliases.setdefault(top, top)
            elif isinstance(node, ast.ImportFrom):
                if node.level or not node.module:
                    for a in node.names:
                        s.foreign_imports[a.asname or a.name] = ("." * node.level) + (node.module or "") + "." + a.name
                    continue
                for a in node.names:
                    if a.name == "*":
                        continue
                    qn = f"{node.module}.{a.name}"
                    s.aliases[a.asname or a.name] = qn
                    if not node.module.split(".")[0] in ("torch", "itertools", "copy", "functools", "typing"):
                        s.foreign_imports[a.asname or a.name] = qn
        for node in tree.body:
            s._collect_defs(node)
        return s

    def _collect_defs(self, node: ast.AST) -> None:
        if isinstance(node, ast.ClassDef):
            self.classes[node.name] = ClassInfo(node.name, node, [self.qualname(b) or "" for b in node.bases])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.functions.setdefault(node.name, node)
        elif isinstance(node, (ast.If, ast.Try)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    self._collect_defs(child)
            for h in getattr(node, "handlers", []):
                for child in h.body:
                    self._collect_defs(child)

    # -- names ---------------------------------------------------------------------------------
    def qualname(self, expr: ast.AST | None) -> str | None:
        """Qualified name of a Name/Attribute chain, or None when it is not an import path.

        Local classes and functions resolve to their plain name."""
        parts: list[str] = []
        node = expr
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = node.id
        if head in self.aliases:
            base = self.aliases[head]
        elif head in self.classes or head in self.functions:
            base = head
        else:
            return None
        return canonical(".".join([base] + list(reversed(parts))))

    def call_qualname(self, call: ast.AST) -> str | None:
        if isinstance(call, ast.Call):
            return self.qualname(call.func)
        return None

    # -- classes -------------------------------------------------------------------------------
    def is_module_class(self, name: str, _seen: frozenset = frozenset()) -> bool:
        """True when a local (or jedi-resolved imported) class subclasses torch.nn.Module."""
        if name in _seen:
            return False
        if name in self.resolved_bases:
            return any(is_torch_module_qualname(b) for b in self.resolved_bases[name])
        info = self.classes.get(name)
        if info is None:
            return False
        for b in info.bases:
            if is_torch_module_qualname(b):
                return True
            if b in self.classes and self.is_module_class(b, _seen | {name}):
                return True
            if b in self.resolved_bases and self.is_module_class(b, _seen | {name}):
                return True
        return False


def is_torch_module_qualname(qn: str | None) -> bool:
    """torch.nn.Module and every class of torch.nn (layers, containers, losses)."""
    if not qn:
        return False
    qn = canonical(qn)
    if qn in ("torch.nn.Module", "torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"):
        return True
    if qn.startswith("torch.nn.") and qn.count(".") == 2:
        last = qn.rsplit(".", 1)[-1]
        return last[:1].isupper() and last not in ("Parameter", "ParameterList", "ParameterDict",
                                                   "Buffer", "UninitializedParameter")
    if qn.startswith(("torchvision.models.", "transformers.")) and qn.rsplit(".", 1)[-1][:1].isupper():
        # Library model classes: modules, but with an unknown inventory.
        return True
    return False


def is_optimizer_qualname(qn: str | None) -> bool:
    if not qn:
        return False
    qn = canonical(qn)
    if not qn.startswith("torch.optim."):
        return False
    last = qn.rsplit(".", 1)[-1]
    return qn.count(".") == 2 and last[:1].isupper() and last not in ("Optimizer",)


def is_loss_qualname(qn: str | None) -> bool:
    return bool(qn) and canonical(qn).startswith("torch.nn.") and canonical(qn).endswith("Loss")
