"""Rule modules. Each module registers checkers with `@rule("GP101", ...)`: a checker takes the
analysis Context and yields Findings for the codes it declares. Modules are discovered, so adding
a rule means adding a function (and its fixtures and docs page), nothing else."""
from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Callable, Iterable

_CHECKERS: list[tuple[str, tuple[str, ...], Callable]] = []
_LOADED = False
_LOAD_LOCK = threading.RLock()  # the language server analyses in worker threads


def rule(*codes: str):
    def deco(fn):
        _CHECKERS.append((f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}", codes, fn))
        return fn
    return deco


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOAD_LOCK:
        if _LOADED:
            return
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        # Only now: a second thread must not see "loaded" while the registry is still empty.
        _LOADED = True


def checkers() -> Iterable[tuple[str, Callable]]:
    _load()
    return [(name, fn) for name, _codes, fn in _CHECKERS]


def registered_codes() -> list[tuple[str, tuple[str, ...]]]:
    _load()
    return [(name, codes) for name, codes, _fn in _CHECKERS]
