"""The facts' one walk over the tree (Facts.build's first step): each node's parent, every call,
every node, the scopes with their own node lists, each node's innermost scope; and, for an edit
patched in the dataflow (flow_patch.py), what that walk recorded for each top-level statement (and
each statement of a top-level class's body) of the kept version, taken over for the statements the
new tree shares with it. Functions of Facts (`self` is the Facts being built)."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterator


@dataclass(eq=False)
class Scope:
    node: ast.AST  # ast.Module, FunctionDef, AsyncFunctionDef
    kind: str  # "module" | "function" | "method"
    name: str
    class_name: str | None = None
    parent: "Scope | None" = None

    @property
    def body(self) -> list[ast.stmt]:
        return getattr(self.node, "body", [])

    def walk(self) -> Iterator[ast.AST]:
        """Every node of this scope in source order, not descending into nested defs/classes/lambdas
        (the shared Load/Store/Del context singletons are left out).

        Facts.build records these lists in its single pass over the tree; a scope made elsewhere
        computes its list on the first call. Either way later calls reuse the list."""
        nodes = self.__dict__.get("_nodes")
        if nodes is None:
            nodes = list(self._walk_uncached())
            self.__dict__["_nodes"] = nodes
        return iter(nodes)

    def _walk_uncached(self) -> Iterator[ast.AST]:
        stack = list(reversed(self.body))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                # decorators and defaults belong to the enclosing scope
                extra = list(getattr(node, "decorator_list", []))
                stack.extend(reversed(extra))
                continue
            stack.extend(reversed([c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.expr_context)]))

    def __repr__(self) -> str:
        return f"Scope({self.kind} {self.class_name + '.' if self.class_name else ''}{self.name})"


def scope_place(node, kind: str, class_name: str | None) -> tuple:
    """Where a scope is, to find the same scope in the next version of an edited file."""
    if kind == "module":
        return ("module",)
    return (kind, class_name, node.name, node.lineno, node.col_offset)


def _shared_operators() -> tuple:
    """The operator nodes the parser shares between all the places they appear (`+`, `==`, `not`,
    `and`: one object each, like Load and Store). They have no parent of their own."""
    sample = "a + b - c * d / e // f % g ** h @ i << j >> k | l & m ^ n; (not o) and p or q; ~r; -s; +t;" \
             "u == v != w < x <= y > z >= aa is bb is not cc in dd not in ee"
    first, again = ast.parse(sample), ast.parse(sample)
    ops = (ast.operator, ast.boolop, ast.unaryop, ast.cmpop)
    return tuple(x for x, y in zip(ast.walk(first), ast.walk(again)) if isinstance(x, ops) and x is y)


_SHARED_OPERATORS = {id(x): x for x in _shared_operators()}


def def_children(node, body: tuple, decorators: tuple, other: tuple) -> list:
    """The walk's stack entries for the children of a def or class node, in field order: each
    child with the (owner list, enclosing scope, class name) of its part: `body`, `decorators`,
    `other` (bases, arguments, defaults, returns)."""
    out = []
    for name, value in ast.iter_fields(node):
        if name == "body":
            out += [(c, *body) for c in value]
        elif name == "decorator_list":
            out += [(c, *decorators) for c in value]
        elif isinstance(value, ast.AST):
            out.append((value, *other))
        elif isinstance(value, list):
            out += [(c, *other) for c in value if isinstance(c, ast.AST)]
    return out


def _facts_base(ctx):
    """The facts of the version the analysis's kept dataflow was made for (flow_patch.py), when
    they recorded what their walk saw per statement."""
    edit = getattr(ctx, "flow_edit", None)
    if edit is None or getattr(ctx, "scope_reuse", None) is None:
        return None
    base = getattr(edit.base.flow, "facts", None)
    if base is None or "_chunks" not in base.__dict__:
        return None
    return base


def single_pass(self, tree: ast.AST, base=None) -> None:
    """One walk over the tree, in source order, recording: each node's parent, every call,
    every node, the scopes (functions and methods, nested ones after their parent), each
    scope's own node list (what Scope.walk yields) and each node's innermost scope.

    `base`: the facts of the version a kept dataflow was made for, whose tree shares with this
    one every top-level statement but the edited one (graft.py). What the walk recorded for
    such a statement there is taken over as it is (its slice of each list, its scopes with
    their node lists; the maps copied, the replaced statements' nodes taken out): the same
    walk of the same nodes records the same. Each statement's slices are kept (`_chunks`)."""
    parents = self.parents
    calls: list[ast.Call] = []
    nodes: list[ast.AST] = [tree]
    # the scopes of a version analysed before, taken over for the same places (flow_patch.py):
    # what that version's dataflow recorded against them then applies to this tree
    reuse = getattr(self.ctx, "scope_reuse", None)
    make = self._scope if reuse else Scope
    module_scope = make(tree, "module", "<module>")
    module_scope.__dict__["_nodes"] = []
    self.scopes.append(module_scope)
    scope_ids: dict[int, Scope] = {id(tree): module_scope}
    node_scope: dict[int, Scope] = {}  # id(node) -> innermost scope strictly containing it
    # stack entries: (node, owner list or None, enclosing scope, class name for direct defs)
    stack: list = []
    own = module_scope.__dict__["_nodes"]
    old_chunks = base.__dict__.get("_chunks") if base is not None else None
    old_subs: dict[int, tuple] = {}  # statements of an edited class's body taken over
    if old_chunks is not None:
        kept = {id(st) for st in tree.body}
        kept_sub = {id(st) for top in tree.body if top.__class__ is ast.ClassDef and id(top) not in old_chunks
                    for st in top.body}
        parents.update(base.parents)
        node_scope.update(base.__dict__["_node_scope"])
        old_nodes = base.__dict__["_all_nodes"]
        old_calls = base.__dict__["_all_calls"]
        old_own = base.__dict__["_module_own"]

        def forget(lo, hi):
            for n in old_nodes[lo:hi]:
                parents.pop(id(n), None)
                node_scope.pop(id(n), None)

        for ch in old_chunks.values():
            if id(ch[0]) in kept:
                continue
            lo = ch[1]
            for sub in ch[8] or ():
                if id(sub[0]) in kept_sub:
                    forget(lo, sub[1])
                    lo = sub[2]
                    old_subs[id(sub[0])] = sub
            forget(lo, ch[2])
    # nodes of the module that are not in its body (type_ignores) keep the old handling
    for child in getattr(tree, "type_ignores", ()):
        parents[id(child)] = tree
    chunks: dict[int, tuple] = {}
    taken: set[int] = set()
    pending: list = []
    push = stack.append
    # Load/Store/Del are shared singletons (no parent of their own): not recorded
    ExprCtx = ast.expr_context

    def take(ch) -> None:
        """What the base's walk recorded for statement ch[0], in the lists of this walk."""
        nodes.extend(old_nodes[ch[1]:ch[2]])
        calls.extend(old_calls[ch[3]:ch[4]])
        own.extend(old_own[ch[5]:ch[6]])
        for sc, node, parent, kind, name, class_name, lst in ch[7]:
            if sc.node is not node:  # pointed at another version's tree since
                for k in [k for k in sc.__dict__ if k.startswith("_")]:
                    del sc.__dict__[k]
            sc.node, sc.parent, sc.kind, sc.name, sc.class_name = node, parent, kind, name, class_name
            sc.__dict__["_nodes"] = lst
            self.scopes.append(sc)
            scope_ids[id(node)] = sc

    def walk(entry) -> None:
        push(entry)
        self._walk_statement(stack, push, pending, nodes, node_scope, calls, parents, make, scope_ids, ExprCtx)

    def chunk(st, n0, c0, s0, m0, subs):
        return (st, n0, len(nodes), c0, len(calls), m0, len(own), [
            (sc, sc.node, sc.parent, sc.kind, sc.name, sc.class_name, sc.__dict__["_nodes"])
            for sc in self.scopes[s0:]], subs)

    for top in tree.body:
        parents[id(top)] = tree
        n0, c0, s0, m0 = len(nodes), len(calls), len(self.scopes), len(own)
        ch = old_chunks.get(id(top)) if old_chunks is not None else None
        subs = None
        if ch is not None and ch[0] is top:
            take(ch)
            node_scope[id(top)] = module_scope
            taken.update(id(sc) for sc, *_rest in ch[7])
            if ch[8] is not None:  # the class's statements, at their places in this walk's lists
                dn, dc, dm = n0 - ch[1], c0 - ch[3], m0 - ch[5]
                subs = [(x[0], x[1] + dn, x[2] + dn, x[3] + dc, x[4] + dc, x[5] + dm, x[6] + dm, x[7], None)
                        for x in ch[8]]
        elif top.__class__ is ast.ClassDef:
            # as the walk below would do it, statement by statement of the body, so that an
            # edit inside one method takes the others over
            nodes.append(top)
            node_scope[id(top)] = module_scope
            own.append(top)
            body = top.body
            entries = def_children(top, (None, module_scope, top.name), (own, module_scope, None),
                                   (None, module_scope, None))
            for e in entries:
                parents[id(e[0])] = top
            subs = []
            in_body = {id(c) for c in body}
            for e in entries:
                st = e[0]
                if id(st) not in in_body:
                    walk(e)
                    continue
                b0, bc0, bs0, bm0 = len(nodes), len(calls), len(self.scopes), len(own)
                sub = old_subs.get(id(st))
                if sub is not None and sub[0] is st:
                    take(sub)
                else:
                    walk(e)
                subs.append(chunk(st, b0, bc0, bs0, bm0, None))
        else:
            walk((top, own, module_scope, None))
        chunks[id(top)] = chunk(top, n0, c0, s0, m0, subs)
    # the walk gave each shared operator the parent it met it under last: none of them is its
    # own node, and a walk that takes statements over meets them in another order
    for k in _SHARED_OPERATORS:
        parents.pop(k, None)
        node_scope.pop(k, None)
    self.__dict__["_all_calls"] = calls
    self.__dict__["_all_nodes"] = nodes
    self.__dict__["_node_scope"] = node_scope
    self.__dict__["_by_node"] = (len(self.scopes), scope_ids)
    self.__dict__["_module_own"] = own
    self.__dict__["_chunks"] = chunks
    self.__dict__["_taken"] = taken

# fields that never hold a node, per node class (names, flags, the shared Load/Store context):
# left out of the walk's look at each node's fields. A class not listed keeps all of its fields.
_NOT_NODES = {
    "Name": ("id", "ctx"), "Attribute": ("attr", "ctx"), "Constant": ("value", "kind"), "Starred": ("ctx",),
    "Subscript": ("ctx",), "List": ("ctx",), "Tuple": ("ctx",), "arg": ("arg", "type_comment"), "keyword": ("arg",),
    "alias": ("name", "asname"), "ImportFrom": ("module", "level"), "Global": ("names",), "Nonlocal": ("names",),
    "ExceptHandler": ("name",), "FormattedValue": ("conversion",), "comprehension": ("is_async",),
    "MatchAs": ("name",), "MatchStar": ("name",), "MatchMapping": ("rest",), "MatchClass": ("kwd_attrs",),
    "MatchSingleton": ("value",), "Assign": ("type_comment",), "For": ("type_comment",),
    "AsyncFor": ("type_comment",), "With": ("type_comment",), "AsyncWith": ("type_comment",),
}
_CHILD_FIELDS: dict = {}  # node class -> the fields to look at, in field order


def _child_fields(cls) -> tuple:
    skip = _NOT_NODES.get(cls.__name__, ())
    got = _CHILD_FIELDS[cls] = tuple(f for f in cls._fields if f not in skip)
    return got


def walk_statement(self, stack, push, pending, nodes, node_scope, calls, parents, make, scope_ids,
                   ExprCtx) -> None:
    """The single pass's walk of one top-level statement (on `stack`)."""
    AST, Call = ast.AST, ast.Call
    FunctionDef, AsyncFunctionDef = ast.FunctionDef, ast.AsyncFunctionDef
    ClassDef, Lambda = ast.ClassDef, ast.Lambda
    fields_of = _CHILD_FIELDS.get
    while stack:
        node, owner, enclosing, class_name = stack.pop()
        nodes.append(node)
        node_scope[id(node)] = enclosing
        if owner is not None:
            owner.append(node)
        cls = node.__class__
        if cls is Call:
            calls.append(node)
        elif cls is FunctionDef or cls is AsyncFunctionDef:
            kind = "method" if class_name else "function"
            scope = make(node, kind, node.name, class_name, enclosing)
            scope.__dict__["_nodes"] = []
            self.scopes.append(scope)
            scope_ids[id(node)] = scope
            sub_own = scope.__dict__["_nodes"]
            # children: body -> the new scope; decorators -> the enclosing walk; the rest
            # (arguments, defaults, returns) -> no walk, innermost scope = the function
            # (decorators: in the enclosing walk; scope_of() keeps naming the function)
            pending[:] = def_children(node, (sub_own, scope, None), (owner, scope, None), (None, scope, None))
            for entry in reversed(pending):
                parents[id(entry[0])] = node
                push(entry)
            continue
        elif cls is ClassDef:
            pending[:] = def_children(node, (None, enclosing, node.name), (owner, enclosing, None),
                                      (None, enclosing, None))
            for entry in reversed(pending):
                parents[id(entry[0])] = node
                push(entry)
            continue
        fields = fields_of(cls)
        if fields is None:
            fields = _child_fields(cls)
        if not fields:
            continue  # (a name, a constant: four nodes in ten)
        if cls is Lambda:
            sub, cn = None, None
        else:
            # a def reached through an if/try/with inside a class body is still a method
            sub, cn = owner, (class_name if owner is None else None)
        kids = []
        for name in fields:
            value = getattr(node, name, None)
            if value.__class__ is list:
                for c in value:
                    if isinstance(c, AST):
                        kids.append(c)
            elif isinstance(value, AST) and not isinstance(value, ExprCtx):
                kids.append(value)
        for c in reversed(kids):
            parents[id(c)] = node
            push((c, sub, enclosing, cn))
