"""Helpers the GP1 rule modules share (params, registration, lifecycle, optimizer_args): how models,
optimizers and parameter names are written into messages, related information and fixes."""
from __future__ import annotations

import ast

from gradpath.analysis.facts import ModelBinding
from gradpath.analysis.findings import Related


ITERATING_CALLS = frozenset({"list", "tuple", "set", "sum", "len", "sorted", "enumerate", "zip", "any", "all",
                             "max", "min", "next", "dict", "frozenset", "map", "filter"})


_CONFIG_NAMES = frozenset({"args", "cfg", "config", "opt", "opts", "hparams", "hp", "params", "options",
                           "settings", "conf", "self.args", "self.cfg", "self.config", "self.hparams"})


# -- helpers --------------------------------------------------------------------------------
def short(cls: str) -> str:
    return cls.rsplit(".", 1)[-1]


def names_text(names: list[str], limit: int = 4) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    if len(names) > limit:
        return ", ".join(names[:limit - 1]) + f" and {len(names) - limit + 1} more"
    return ", ".join(names[:-1]) + " and " + names[-1]


def nn_prefix(ctx) -> str | None:
    """How this file spells torch.nn (`nn`, `torch.nn`), or None."""
    for local, qn in ctx.symbols.aliases.items():
        if qn == "torch.nn":
            return local
    for local, qn in ctx.symbols.aliases.items():
        if qn == "torch":
            return f"{local}.nn"
    return None


def torch_prefix(ctx) -> str | None:
    for local, qn in ctx.symbols.aliases.items():
        if qn == "torch":
            return local
    return None


def model_data(model: ModelBinding | None, opt=None, missing=None) -> dict:
    d = {}
    if model is not None:
        d["model"] = model.key
        d["model_class"] = model.cls
    if opt is not None:
        d["optimizer"] = opt.key
        d["optimizer_class"] = opt.cls
    if missing is not None:
        d["missing"] = list(missing)
    return d


def _param_related(ctx, inv, names: list[str], limit: int = 3) -> list[Related]:
    out, seen = [], set()
    for p in inv.params:
        if p.name in names and p.node is not None and p.path in (None, ctx.path) and id(p.node) not in seen:
            seen.add(id(p.node))
            out.append(Related(ctx.span(p.node), f"{p.name} is created here"))
            if len(out) >= limit:
                break
    return out


def _model_related(ctx, model: ModelBinding, what: str = "is created here") -> Related:
    return Related(ctx.span(model.stmt), f"{model.key} ({short(model.cls)}) {what}")


def _trainable_models_visible(facts, opt) -> list[ModelBinding]:
    """Models with parameters that exist where the optimizer is built, one per key (latest)."""
    out: dict[str, ModelBinding] = {}
    for s in facts.visible_scopes(opt.scope):
        for b in facts.models:
            if b.scope is not s or b.key in out:
                continue
            if s is opt.scope and b.line > opt.line:
                continue
            cur = facts.model_at(b.key, opt.scope, opt.line)
            if cur is None:
                continue
            inv = facts.inventory_of(cur)
            if inv is None or not inv.has_params:
                continue
            if s is not opt.scope and s.kind != "module" and not b.key.startswith("self."):
                continue
            out[b.key] = cur
    return list(out.values())


def _indent(ctx, line: int) -> str:
    return ctx.src.indent_of(line)


# -- GP101 ----------------------------------------------------------------------------------
def _is_empty_params(p) -> bool:
    if isinstance(p, (ast.List, ast.Tuple)) and not p.elts:
        return True
    return isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in ("list", "tuple") \
        and not p.args and not p.keywords
