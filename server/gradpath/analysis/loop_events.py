"""The loop facts' events (see loops.py): one training event (`Ev`: backward, step, zero_grad, train,
eval, forward...) with the path of frames it sits in (loops, ifs, no_grad blocks, calls), the
questions the GP4 rules ask of events and keys, and a `Unit`: the events of one function or module
body, computed on demand. Pure: stdlib `ast`."""
from __future__ import annotations

import ast
from dataclasses import dataclass, replace

from typing import TYPE_CHECKING

from gradpath.analysis import frameworks

if TYPE_CHECKING:
    from gradpath.analysis.loops import LoopFacts

MAX_DEPTH = 3

# Frames of an event's path
LOOP, IF, NOGRAD, CALL, CLOSURE = "loop", "if", "nograd", "call", "closure"
# `with accelerator.accumulate(model):` (frame: (ACCUM, with statement, model key)); see frameworks.py
ACCUM = "accum"


@dataclass(eq=False)
class Ev:
    kind: str  # zero_grad | backward | step | sched | train | eval | fwd | opaque
    key: str | None  # optimizer / model / scheduler / loss key (see module doc)
    node: ast.AST  # the call (a `for p in m.parameters()` statement for a manual grad reset)
    path: tuple = ()
    target: str = ""  # zero_grad: "optimizer" | "model"; step: "optimizer" | "unknown"
    models: tuple = ()  # optimizer events: keys of the models whose parameters it holds
    opt: str | None = None  # sched: the optimizer it schedules
    args: tuple = ()  # opaque: keys its arguments mention; ("*",) when it may do anything
    fn: ast.AST | None = None  # the function (or module) whose code holds `node`

    def loops(self) -> list[ast.AST]:
        return [f[1] for f in self.path if f[0] == LOOP]

    def in_loop(self, loop: ast.AST) -> bool:
        return any(f[0] == LOOP and f[1] is loop for f in self.path)

    def frames_after(self, loop: ast.AST | None) -> tuple:
        if loop is None:
            return self.path
        for i, f in enumerate(self.path):
            if f[0] == LOOP and f[1] is loop:
                return self.path[i + 1:]
        return ()

    def frames_to(self, loop: ast.AST) -> tuple:
        """The path up to and including `loop`, by node identity: events of one inlined call of
        the function holding the loop share it; the same loop reached through another call site
        (the function called again for another model) does not."""
        for i, f in enumerate(self.path):
            if f[0] == LOOP and f[1] is loop:
                return tuple((g[0], id(g[1])) for g in self.path[:i + 1])
        return ()

    def conditional_in(self, loop: ast.AST | None) -> bool:
        return any(f[0] == IF for f in self.frames_after(loop))

    @property
    def nograd(self) -> bool:
        return any(f[0] == NOGRAD for f in self.path)

    @property
    def in_closure(self) -> bool:
        return any(f[0] == CLOSURE for f in self.path)

    @property
    def via_call(self) -> bool:
        return any(f[0] == CALL for f in self.path)


class _IfTest:
    """The test of an `if` frame, equal to another when their texts (ast.dump) are equal; the text
    is made on the first comparison (most frames are never compared: exclusive() is asked about
    training events only)."""
    __slots__ = ("test", "_dumps", "_d")

    def __init__(self, test: ast.AST, dumps: dict):
        self.test, self._dumps, self._d = test, dumps, None

    def text(self) -> str:
        d = self._d
        if d is None:
            d = self._dumps.get(id(self.test))
            if d is None:
                d = self._dumps[id(self.test)] = ast.dump(self.test)
            self._d = d
        return d

    def __eq__(self, other):
        if other is self:
            return True
        if not isinstance(other, _IfTest):
            return NotImplemented
        return self.text() == other.text()

    def __hash__(self):
        return hash(("if", self.text()))


def exclusive(a: Ev, b: Ev) -> bool:
    """True when a and b sit in different branches of the same `if`/`try`/`match`, or of two `if`s
    with the same test text (`if phase == "train":` written twice in one iteration)."""
    branches = {f[3]: f[2] for f in a.path if f[0] == IF}
    return any(f[0] == IF and f[3] in branches and branches[f[3]] != f[2] for f in b.path)


def nameable(key: str | None) -> bool:
    return bool(key) and ":" not in key


def display(key: str | None) -> str:
    return (key or "?").rsplit(":", 1)[-1]


def key_matches(a: str | None, b: str | None) -> bool:
    """Same object, one a submodule of the other, or same attribute name (`model`/`self.model`)."""
    if not a or not b:
        return False
    a, b = display(a), display(b)
    if a == b or a.startswith(b + ".") or b.startswith(a + "."):
        return True
    return a.rsplit(".", 1)[-1] == b.rsplit(".", 1)[-1]


def same_model(a: str | None, b: str | None) -> bool:
    """Stricter: the same key, up to a leading `self.`."""
    if not a or not b:
        return False
    a, b = display(a), display(b)
    return a.removeprefix("self.") == b.removeprefix("self.")


class Unit:
    """One root scope flattened: its events and the loops written in its own code. Computed on
    first use: most scopes of a file are not training code (see `relevant`)."""

    def __init__(self, scope, lf: "LoopFacts", relevant: bool):
        self.scope = scope  # facts.Scope
        self.relevant = relevant  # may hold a zero_grad/backward/step/train/eval event at all
        self._lf = lf
        self._events: list[Ev] | None = None
        self._loops: list[ast.AST] | None = None

    def _compute(self) -> None:
        events = self._lf.function_events(self.scope.node, MAX_DEPTH)
        body = frameworks.body_of(self._lf.ctx, self.scope.node)
        if body is not None and body.role == frameworks.LOOP_BODY:
            # the framework runs this function once per batch: its body is one loop iteration
            frame = (LOOP, self.scope.node)
            events = [replace(e, path=(frame,) + e.path) for e in events]
        loops: list[ast.AST] = []
        seen: set[int] = set()
        for e in events:
            for f in e.path:
                if f[0] == CALL:
                    break
                if f[0] == LOOP and id(f[1]) not in seen:
                    seen.add(id(f[1]))
                    loops.append(f[1])
        loops.sort(key=lambda n: (n.lineno, n.col_offset))
        self._events, self._loops = events, loops

    @property
    def events(self) -> list[Ev]:
        if self._events is None:
            self._compute()
        return self._events

    @property
    def loops(self) -> list[ast.AST]:  # loops of the root's own code that hold an event, source order
        if self._loops is None:
            self._compute()
        return self._loops

    def loop_events(self, loop: ast.AST) -> list[tuple[int, Ev]]:
        return [(i, e) for i, e in enumerate(self.events) if e.in_loop(loop)]

    def parent_loop(self, loop: ast.AST) -> ast.AST | None:
        """The loop of the root's own code that directly encloses `loop`."""
        for e in self.events:
            ls = e.loops()
            for i, l in enumerate(ls):
                if l is loop:
                    return ls[i - 1] if i > 0 else None
        return None
