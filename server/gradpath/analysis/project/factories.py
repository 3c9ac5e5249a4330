"""Model classes reached through a project function: `model = build_model(cfg)` where `build_model`
(in another module) returns `Detector(...)`. The resolver records the class under the factory's
name, so the parameter-inventory facts (GP1) see the model as they see `Detector()` itself.

Only when every return of the factory, linked across modules, is an instance of one module class
of the project; otherwise nothing is recorded (unknown stays unknown).
"""
from __future__ import annotations

import ast
import logging

from gradpath.analysis.project import linked_summary

log = logging.getLogger("gradpath.project")


def enrich(resolver, ctx) -> None:
    linked = linked_summary(ctx)
    if linked is None:
        return
    project, path, lk, sm = linked
    sym = ctx.symbols
    imported = getattr(sym, "imported_classes", None)
    if imported is None:
        return
    called = {n.func.id for n in ast.walk(ctx.tree)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    for local, qn in sm["imports"].items():
        if local not in called or local in imported or local[:1].isupper():
            continue
        vals = lk.resolve(qn, path)
        if len(vals) != 1:
            continue
        (v,) = vals
        if v[0] != "fn" or v[1] == path:
            continue
        rets = lk.returns_of(v[1], v[2], 0)
        if len(rets) != 1:
            continue
        (r,) = rets
        if r[0] != "inst" or not lk.is_module_class(r[1], r[2]):
            continue
        src = _class_source(resolver, r[1], r[2])
        if src is not None:
            try:
                resolver._record(sym, local, src)
            except Exception:  # pragma: no cover - a resolver without _record: nothing recorded
                log.debug("could not record %s", local, exc_info=True)


def _class_source(resolver, path: str, name: str):
    from gradpath.analysis.facts import ClassSource
    load = getattr(resolver, "load", None)
    if load is None:
        return None
    m = load(path)
    if m is None:
        return None
    info = m.symbols.classes.get(name)
    if info is None:
        return None
    try:
        resolver._resolve_module_imports(m, 0)
    except Exception:
        pass
    return ClassSource(info.node, m.symbols, path)
