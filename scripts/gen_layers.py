#!/usr/bin/env python
"""Generate server/gradpath/data/layers.json: the parameter inventory of torch.nn layers.

Run with an interpreter that has torch (`.venv/bin/python scripts/gen_layers.py`). The language
server never imports torch: it reads the JSON this script writes.

How it works: every parameterised layer is built under several constructor configurations whose
integer arguments are distinct values; each dimension of each parameter is then matched to an
expression over the constructor arguments (`out_features`, `4*hidden_size`,
`in_channels//groups`, `kernel_size[1]`) that gives the right value in every configuration.
Boolean arguments that change the set of parameters (`bias`, `affine`, `elementwise_affine`,
`bidirectional`, `add_bias_kv`...) are explored one combination at a time and recorded as cases.
RNN-style layers are recorded with layer 0 and layer 1 entries; layers >= 1 repeat layer 1.
Every other class of torch.nn that builds with no arguments is recorded with its parameters
(most have none: activations, losses, dropout, pooling).
"""
from __future__ import annotations

import inspect
import itertools
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn

OUT = Path(__file__).resolve().parent.parent / "server" / "gradpath" / "data" / "layers.json"

# class name -> (list of base configurations, flags to explore, extra int args that change names)
# Base configurations give distinct values to the integer arguments so that each dimension matches
# one expression only.
CONV_CFGS = [
    dict(in_channels=6, out_channels=10, kernel_size=(3, 5, 7), groups=2),
    dict(in_channels=15, out_channels=21, kernel_size=(11, 13, 17), groups=3),
    dict(in_channels=28, out_channels=44, kernel_size=(19, 23, 29), groups=4),
]


def _conv(dims):
    return [dict(c, kernel_size=c["kernel_size"][:dims]) for c in CONV_CFGS]


SPECS: dict[str, tuple[list[dict], list[str]]] = {
    "Linear": ([dict(in_features=11, out_features=13), dict(in_features=17, out_features=19)], ["bias"]),
    "Bilinear": ([dict(in1_features=11, in2_features=13, out_features=17),
                  dict(in1_features=19, in2_features=23, out_features=29)], ["bias"]),
    "Conv1d": (_conv(1), ["bias"]),
    "Conv2d": (_conv(2), ["bias"]),
    "Conv3d": (_conv(3), ["bias"]),
    "ConvTranspose1d": (_conv(1), ["bias"]),
    "ConvTranspose2d": (_conv(2), ["bias"]),
    "ConvTranspose3d": (_conv(3), ["bias"]),
    "BatchNorm1d": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "BatchNorm2d": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "BatchNorm3d": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "SyncBatchNorm": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "InstanceNorm1d": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "InstanceNorm2d": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "InstanceNorm3d": ([dict(num_features=11), dict(num_features=13)], ["affine"]),
    "GroupNorm": ([dict(num_groups=2, num_channels=22), dict(num_groups=3, num_channels=39)], ["affine"]),
    "LayerNorm": ([dict(normalized_shape=11), dict(normalized_shape=13)], ["elementwise_affine", "bias"]),
    "RMSNorm": ([dict(normalized_shape=11), dict(normalized_shape=13)], ["elementwise_affine"]),
    "LocalResponseNorm": ([dict(size=3)], []),
    "Embedding": ([dict(num_embeddings=11, embedding_dim=13), dict(num_embeddings=17, embedding_dim=19)], []),
    "EmbeddingBag": ([dict(num_embeddings=11, embedding_dim=13), dict(num_embeddings=17, embedding_dim=19)], []),
    "RNN": ([dict(input_size=11, hidden_size=13, num_layers=2), dict(input_size=17, hidden_size=19, num_layers=2)],
            ["bias", "bidirectional"]),
    "GRU": ([dict(input_size=11, hidden_size=13, num_layers=2), dict(input_size=17, hidden_size=19, num_layers=2)],
            ["bias", "bidirectional"]),
    "LSTM": ([dict(input_size=11, hidden_size=13, num_layers=2, proj_size=0),
              dict(input_size=17, hidden_size=19, num_layers=2, proj_size=0)],
             ["bias", "bidirectional", "proj_size"]),
    "RNNCell": ([dict(input_size=11, hidden_size=13), dict(input_size=17, hidden_size=19)], ["bias"]),
    "GRUCell": ([dict(input_size=11, hidden_size=13), dict(input_size=17, hidden_size=19)], ["bias"]),
    "LSTMCell": ([dict(input_size=11, hidden_size=13), dict(input_size=17, hidden_size=19)], ["bias"]),
    "MultiheadAttention": ([dict(embed_dim=22, num_heads=2), dict(embed_dim=39, num_heads=3)],
                           ["bias", "add_bias_kv", "kdim"]),
    "TransformerEncoderLayer": ([dict(d_model=22, nhead=2, dim_feedforward=13),
                                 dict(d_model=39, nhead=3, dim_feedforward=17)], ["bias"]),
    "TransformerDecoderLayer": ([dict(d_model=22, nhead=2, dim_feedforward=13),
                                 dict(d_model=39, nhead=3, dim_feedforward=17)], ["bias"]),
    "PReLU": ([dict(num_parameters=11), dict(num_parameters=13)], []),
}
# How a flag is flipped for exploration (default -> other value).
FLIPS = {"proj_size": (0, 5), "kdim": (None, 7)}
# Flipping one flag sets these other arguments too (MultiheadAttention: kdim and vdim together).
FLIP_ALSO = {"kdim": {"vdim": 11}}
# Arguments whose None default means "the same as another argument".
NONE_MEANS = {"MultiheadAttention": {"kdim": "embed_dim", "vdim": "embed_dim"}}
# Int arguments whose value (not only truthiness) is irrelevant to names: only zero vs non-zero.
LAYERED = {"RNN", "GRU", "LSTM"}


def _params(cls, kwargs):
    torch.manual_seed(0)
    m = cls(**kwargs)
    return {n: list(p.shape) for n, p in m.named_parameters()}


def _candidates(cfg: dict):
    """(expression, value) pairs over a configuration's integer arguments, in priority order."""
    ints = {k: v for k, v in cfg.items() if isinstance(v, int) and not isinstance(v, bool)}
    tuples = {k: v for k, v in cfg.items() if isinstance(v, tuple)}
    out = [(k, v) for k, v in ints.items()]
    for k, t in tuples.items():
        out += [(f"{k}[{i}]", x) for i, x in enumerate(t)]
    for a, b in itertools.permutations(ints, 2):
        if ints[b] and ints[a] % ints[b] == 0:
            out.append((f"{a}//{b}", ints[a] // ints[b]))
    for c in (2, 3, 4, 6, 8):
        out += [(f"{c}*{k}", c * v) for k, v in ints.items()]
    for a, b in itertools.combinations(ints, 2):
        out.append((f"{a}*{b}", ints[a] * ints[b]))
    for a, b in itertools.permutations(ints, 2):
        if ints[b] and ints[a] % ints[b] == 0:
            for c in (2, 3, 4):
                out.append((f"{c}*{a}//{b}", c * ints[a] // ints[b]))
    return out


def _eval_expr(expr: str, cfg: dict):
    return eval(expr, {"__builtins__": {}}, dict(cfg))  # noqa: S307 - our own expressions


def _match(dim_values: list[int], cfgs: list[dict]):
    for expr, _ in _candidates(cfgs[0]):
        try:
            if all(_eval_expr(expr, c) == v for c, v in zip(cfgs, dim_values)):
                return expr
        except Exception:
            continue
    if len(set(dim_values)) == 1:
        return dim_values[0]  # a constant
    return None


# RNN classes take (*args, **kwargs); their documented signatures:
_RNN_ARGS = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"]
_RNN_DEFAULTS = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}
SIGNATURES = {
    "RNN": (_RNN_ARGS + ["nonlinearity"], dict(_RNN_DEFAULTS, nonlinearity="tanh")),
    "GRU": (_RNN_ARGS, dict(_RNN_DEFAULTS)),
    "LSTM": (_RNN_ARGS + ["proj_size"], dict(_RNN_DEFAULTS, proj_size=0)),
}


def _signature(cls):
    if cls.__name__ in SIGNATURES and cls.__module__.startswith("torch.nn"):
        names, defaults = SIGNATURES[cls.__name__]
        return list(names), dict(defaults)
    sig = inspect.signature(cls.__init__)
    names, defaults = [], {}
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        names.append(p.name)
        if p.default is not p.empty:
            d = p.default
            if isinstance(d, (bool, int, float, str)) or d is None:
                defaults[p.name] = d
            elif isinstance(d, tuple) and all(isinstance(x, (int, float)) for x in d):
                defaults[p.name] = list(d)
    return names, defaults


def _describe(name: str, cls, cfgs: list[dict], flags: list[str]):
    names, defaults = _signature(cls)
    flags = [f for f in flags if f in names]
    cases = []
    for combo in itertools.product([False, True], repeat=len(flags)):
        when, over = {}, {}
        for f, flipped in zip(flags, combo):
            dflt, other = FLIPS.get(f, (defaults.get(f), not defaults.get(f)))
            val = other if flipped else dflt
            over[f] = val
            if flipped:
                over.update(FLIP_ALSO.get(f, {}))
            when[f] = bool(val) if f in FLIPS else val
        try:
            shapes = [_params(cls, dict(c, **over)) for c in cfgs]
        except Exception as exc:  # a combination torch refuses
            print(f"  {name} {over}: {exc}", file=sys.stderr)
            continue
        full = [dict(c, **{k: v for k, v in over.items() if v is not None and not isinstance(v, bool)}) for c in cfgs]
        params = {}
        for pname in shapes[0]:
            dims = []
            for i in range(len(shapes[0][pname])):
                expr = _match([s[pname][i] for s in shapes], full)
                if expr is None:
                    print(f"  {name}.{pname} dim {i}: no expression for {[s[pname][i] for s in shapes]}",
                          file=sys.stderr)
                dims.append(expr)
            params[pname] = dims
        cases.append({"when": when, "params": params})
    # Drop flags that never change the parameter set.
    entry = {"args": names, "defaults": defaults, "cases": cases}
    if name in NONE_MEANS:
        entry["none_means"] = NONE_MEANS[name]
    if name in LAYERED:
        entry["layered"] = "num_layers"
    return entry


def _no_arg_layers(done: set[str]):
    out = {}
    for name in sorted(dir(nn)):
        obj = getattr(nn, name)
        if name in done or not inspect.isclass(obj) or not issubclass(obj, nn.Module):
            continue
        if name.startswith("Lazy") or name in ("Module", "Sequential", "ModuleList", "ModuleDict",
                                               "ParameterList", "ParameterDict", "Container"):
            continue
        names, defaults = _signature(obj)
        try:
            m = obj()
        except Exception:
            # Needs arguments: record parameter names only when it is known to have none.
            out[name] = {"args": names, "defaults": defaults, "cases": None}
            continue
        params = {n: list(p.shape) for n, p in m.named_parameters()}
        out[name] = {"args": names, "defaults": defaults, "cases": [{"when": {}, "params": params}]}
        if params:
            # Recorded from the default construction only: exact when called with no arguments.
            out[name]["defaults_only"] = True
    return out


# Classes that take required arguments but never have parameters (checked below against torch).
PARAMLESS_WITH_ARGS = {
    "Softmax": dict(dim=1), "LogSoftmax": dict(dim=1), "Softmin": dict(dim=1),
    "Dropout": dict(p=0.1), "MaxPool1d": dict(kernel_size=2), "MaxPool2d": dict(kernel_size=2),
    "MaxPool3d": dict(kernel_size=2), "AvgPool1d": dict(kernel_size=2), "AvgPool2d": dict(kernel_size=2),
    "AvgPool3d": dict(kernel_size=2), "AdaptiveAvgPool1d": dict(output_size=1),
    "AdaptiveAvgPool2d": dict(output_size=1), "AdaptiveAvgPool3d": dict(output_size=1),
    "AdaptiveMaxPool1d": dict(output_size=1), "AdaptiveMaxPool2d": dict(output_size=1),
    "AdaptiveMaxPool3d": dict(output_size=1), "Upsample": dict(scale_factor=2),
    "PixelShuffle": dict(upscale_factor=2), "PixelUnshuffle": dict(downscale_factor=2),
    "Unflatten": dict(dim=1, unflattened_size=(2, 2)), "ConstantPad1d": dict(padding=1, value=0.0),
    "ConstantPad2d": dict(padding=1, value=0.0), "ReflectionPad1d": dict(padding=1),
    "ReflectionPad2d": dict(padding=1), "ReplicationPad1d": dict(padding=1),
    "ReplicationPad2d": dict(padding=1), "ZeroPad2d": dict(padding=1), "ZeroPad1d": dict(padding=1),
    "Threshold": dict(threshold=0.1, value=0.0), "GLU": dict(), "ChannelShuffle": dict(groups=2),
    "Fold": dict(output_size=4, kernel_size=2), "Unfold": dict(kernel_size=2),
    "CosineSimilarity": dict(), "PairwiseDistance": dict(), "AlphaDropout": dict(p=0.1),
}


def main() -> int:
    table = {}
    for name, (cfgs, flags) in SPECS.items():
        cls = getattr(nn, name, None)
        if cls is None:
            continue
        table[name] = _describe(name, cls, cfgs, flags)
    for name, kwargs in PARAMLESS_WITH_ARGS.items():
        cls = getattr(nn, name, None)
        if cls is None:
            continue
        names, defaults = _signature(cls)
        m = cls(**kwargs)
        table[name] = {"args": names, "defaults": defaults,
                       "cases": [{"when": {}, "params": {n: list(p.shape) for n, p in m.named_parameters()}}]}
    for name, entry in _no_arg_layers(set(table)).items():
        table.setdefault(name, entry)
    out = {"torch_version": torch.__version__.split("+")[0],
           "layers": {f"torch.nn.{k}": v for k, v in sorted(table.items())}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    n_params = sum(1 for v in table.values() if v["cases"] and any(c["params"] for c in v["cases"]))
    print(f"wrote {OUT}: {len(table)} classes, {n_params} with parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
