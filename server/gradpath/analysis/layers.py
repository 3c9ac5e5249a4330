"""Parameter inventory of torch.nn layers, read from data/layers.json (generated from torch by
scripts/gen_layers.py). Never imports torch.

`layer_params("torch.nn.Linear", [10, 1], {"bias": False})` -> [ParamInfo("weight", (1, 10))].
Argument values are Python constants, or `UNKNOWN` for anything the analysis cannot evaluate;
a shape dimension that depends on an unknown value is None. When an argument that decides which
parameters exist (`bias=use_bias`) is unknown, the answer is None (unknown inventory).
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "layers.json"


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class ParamInfo:
    name: str
    shape: tuple | None  # ints, or None for a dimension that is not known

    @property
    def numel(self) -> int | None:
        if self.shape is None or any(d is None for d in self.shape):
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n

    def shape_text(self) -> str:
        if self.shape is None:
            return "?"
        return "(" + ", ".join("?" if d is None else str(d) for d in self.shape) + ("," if len(self.shape) == 1 else "") + ")"


@lru_cache(maxsize=1)
def table() -> dict:
    try:
        return json.loads(DATA.read_text(encoding="utf-8"))["layers"]
    except (OSError, ValueError, KeyError):  # pragma: no cover - shipped with the package
        return {}


def torch_version() -> str | None:
    try:
        return json.loads(DATA.read_text(encoding="utf-8")).get("torch_version")
    except (OSError, ValueError):  # pragma: no cover
        return None


def known(qualname: str) -> bool:
    return qualname in table()


def has_parameters(qualname: str) -> bool | None:
    """True/False when the table knows; None when the class is not in it."""
    entry = table().get(qualname)
    if entry is None:
        return None
    cases = entry.get("cases")
    if cases is None:
        return None
    return any(c["params"] for c in cases)


def _bind(entry: dict, args: list, kwargs: dict) -> dict:
    env = dict(entry.get("defaults", {}))
    names = entry.get("args", [])
    for i, v in enumerate(args):
        if i < len(names):
            env[names[i]] = v
    for k, v in kwargs.items():
        env[k] = v
    for k, other in entry.get("none_means", {}).items():
        if env.get(k) is None:
            env[k] = env.get(other, UNKNOWN)
    return env


def _flag_value(flag: str, env: dict):
    v = env.get(flag, UNKNOWN)
    if v is UNKNOWN and flag != "kdim":
        return UNKNOWN
    if flag == "kdim":  # MultiheadAttention: separate q/k/v weights when kdim or vdim differs
        e = env.get("embed_dim", UNKNOWN)
        out = False
        for key in ("kdim", "vdim"):
            d = env.get(key)
            if d is e:  # not given: the same as embed_dim
                continue
            if d is UNKNOWN:
                return UNKNOWN
            if d is not None and not isinstance(d, bool):
                if e is UNKNOWN:
                    return UNKNOWN
                out = out or d != e
        return out
    if flag == "proj_size":
        return bool(v)
    return v


def _eval_dim(expr, env: dict):
    if isinstance(expr, int):
        return expr
    try:
        node = ast.parse(str(expr), mode="eval").body
    except SyntaxError:
        return None
    return _ev(node, env)


def _ev(node, env):
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        v = env.get(node.id, UNKNOWN)
        if isinstance(v, bool) or v is UNKNOWN or v is None:
            return None
        if isinstance(v, (list, tuple)):
            return tuple(v)
        return v if isinstance(v, int) else None
    if isinstance(node, ast.Subscript):
        base = _ev(node.value, env)
        idx = _ev(node.slice, env)
        if base is None or idx is None:
            return None
        if isinstance(base, int):  # kernel_size=3 means (3, 3)
            return base
        try:
            return base[idx]
        except (IndexError, TypeError):
            return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.FloorDiv)):
        a, b = _ev(node.left, env), _ev(node.right, env)
        if not isinstance(a, int) or not isinstance(b, int):
            return None
        if isinstance(node.op, ast.Mult):
            return a * b
        return a // b if b else None
    return None


def layer_params(qualname: str, args: list | None = None, kwargs: dict | None = None) -> list[ParamInfo] | None:
    """Parameters of `qualname(*args, **kwargs)`, or None when they cannot be known."""
    entry = table().get(qualname)
    if entry is None or entry.get("cases") is None:
        return None
    args, kwargs = list(args or []), dict(kwargs or {})
    if any(a is UNKNOWN for a in args[:0]):
        return None
    if entry.get("defaults_only"):
        if args or kwargs:
            return None
        case = entry["cases"][0]
        return [ParamInfo(n, tuple(s)) for n, s in case["params"].items()]
    env = _bind(entry, args, kwargs)
    chosen = None
    for case in entry["cases"]:
        ok = True
        for flag, want in case["when"].items():
            have = _flag_value(flag, env)
            if have is UNKNOWN:
                # Does this flag matter? Only if cases differing in it have different names.
                return _if_flag_irrelevant(entry, env)
            if bool(have) != bool(want):
                ok = False
                break
        if ok:
            chosen = case
            break
    if chosen is None:
        return None
    out = []
    layered = entry.get("layered")
    n_layers = None
    if layered:
        n_layers = env.get(layered, 1)
        if not isinstance(n_layers, int) or isinstance(n_layers, bool):
            return None
    shape_env = {k: v for k, v in env.items()}
    for name, dims in chosen["params"].items():
        shape = tuple(_splat(dims, shape_env))
        if layered and "_l1" in name:
            for k in range(1, n_layers):
                out.append(ParamInfo(name.replace("_l1", f"_l{k}"), shape))
            continue
        out.append(ParamInfo(name, shape))
    if layered:
        # keep torch's order: all of layer 0, then layer 1...
        out.sort(key=lambda p: _layer_index(p.name))
    return out


def _splat(dims, env):
    for d in dims:
        v = _eval_dim(d, env)
        if isinstance(v, tuple):  # LayerNorm((4, 5)): the shape is the tuple
            yield from v
        else:
            yield v


def _layer_index(name: str) -> int:
    import re
    m = re.search(r"_l(\d+)", name)
    return int(m.group(1)) if m else 0


def _if_flag_irrelevant(entry, env):
    names = {tuple(sorted(c["params"])) for c in entry["cases"]}
    if len(names) == 1 and not entry.get("layered"):
        case = entry["cases"][0]
        return [ParamInfo(n, tuple(_splat(d, env))) for n, d in case["params"].items()]
    return None
