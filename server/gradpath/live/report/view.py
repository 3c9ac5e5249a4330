"""From a live step's gradient-flow table (gradpath.live.flowtable) to what a picture shows: flags per
tensor, the module tree, log-scale bar lengths, the summary line, and which rows are the subject of a
finding. Pure: no torch, no pygls. The editor's view, the HTML report and the SVG/PNG images all draw
this one view model, so they agree.

    v = flow_view(table, findings=[...], title="train.py")   # a JSON-able dict
    v["summary"]   # "3 of 13 tensors updated; 7 never reach Adam: encoder.*, scale"
    v["items"]     # [{"type": "group", ...}, {"type": "row", ...}] in module-tree order
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable

from gradpath.live.numfmt import fmt, num  # one number format with the verdicts' evidence

# (key, legend text, colour on a light background, colour on a dark one); the order is the legend's
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("no-optimizer", "not in any optimizer", "#c62828", "#ff6b6b"),
    ("frozen", "frozen (requires_grad=False)", "#546e7a", "#a7b6c2"),
    ("no-grad", "no gradient (None)", "#ef6c00", "#ffa94d"),
    ("zero-grad", "zero gradient", "#b8860b", "#ffd43b"),
    ("nonfinite", "non-finite (NaN/inf)", "#ad1457", "#f783ac"),
    ("unchanged", "unchanged after the step", "#6a1b9a", "#c084fc"),
    ("unregistered", "not registered in parameters()", "#1565c0", "#74c0fc"),
)
FLAG_TEXT = {k: t for k, t, _, _ in FLAGS}
SHORT = {"no-optimizer": "no optimizer", "frozen": "frozen", "no-grad": "grad None", "zero-grad": "grad 0",
         "nonfinite": "non-finite", "unchanged": "unchanged", "unregistered": "unregistered"}

# finding families -> the flags whose rows are that finding's subject
_SUBJECT_FLAGS = {
    "GP101": ("no-optimizer", "unchanged"), "GP102": ("no-optimizer",), "GP103": ("no-optimizer",),
    "GP106": ("no-optimizer", "unchanged"), "GP107": ("frozen",), "GP108": ("no-optimizer", "unchanged"),
    "GP104": ("unregistered",), "GP105": ("unregistered",), "GP112": ("no-optimizer",),
    "GP113": ("no-grad",), "GP204": ("no-grad", "zero-grad"), "GP201": ("no-grad",), "GP202": ("no-grad",),
    "GP203": ("no-grad", "zero-grad"), "GP205": ("no-grad", "zero-grad"), "GP404": ("unchanged",),
    "GP402": ("zero-grad", "unchanged"),
}


def row_flags(row: dict, steps: int) -> list[str]:
    flags = []
    trainable = bool(row.get("requires_grad"))
    state = row.get("grad_state") or ("none" if row.get("grad") is None else "finite")
    upd = num(row.get("update"))
    if trainable and not row.get("optimizers"):
        flags.append("no-optimizer")
    if not trainable:
        flags.append("frozen")
    if trainable and state == "none":
        flags.append("no-grad")
    if state == "zero":
        flags.append("zero-grad")
    if state == "nonfinite" or (upd is not None and math.isnan(upd)):
        flags.append("nonfinite")
    if trainable and steps and row.get("changed") is False:
        flags.append("unchanged")
    if row.get("registered") is False and row.get("kind") != "bare-tensor":  # (a bare tensor is deliberate)
        flags.append("unregistered")
    return flags


class LogScale:
    """Maps positive values to [MIN_FRAC, 1] on a log scale spanning at least one decade."""
    MIN_FRAC = 0.04
    MAX_DECADES = 12

    def __init__(self, values: Iterable[float | None]):
        pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
        if not pos:
            self.lo = self.hi = None
            return
        hi = math.ceil(math.log10(max(pos)) - 1e-9)
        lo = math.floor(math.log10(min(pos)) + 1e-9)
        lo = max(lo, hi - self.MAX_DECADES)
        if hi - lo < 1:
            lo = hi - 1
        self.lo, self.hi = lo, hi

    def frac(self, v: float | None) -> float | None:
        if v is None or self.lo is None:
            return None
        if not math.isfinite(v):
            return 1.0
        if v <= 0:
            return 0.0
        t = (math.log10(v) - self.lo) / (self.hi - self.lo)
        return round(max(self.MIN_FRAC, min(1.0, self.MIN_FRAC + (1 - self.MIN_FRAC) * t)), 4)

    def ticks(self) -> list[dict]:
        if self.lo is None:
            return []
        step = max(1, math.ceil((self.hi - self.lo) / 6))
        out = []
        for e in range(self.lo, self.hi + 1, step):
            out.append({"frac": self.frac(10.0 ** e), "label": f"1e{e}"})
        return out


def _split_path(path: str) -> list[str]:
    """`encoder.layers.0` -> ["encoder", "layers", "0"]; `blocks[2]` stays one part."""
    return [p for p in path.split(".") if p] if path else []


def _name_parts(name: str) -> list[str]:
    """`hidden[0].weight` -> ["hidden", "[0]", "weight"]."""
    return [p for p in re.split(r"\.|(?=\[)", name) if p]


def _join(parts: list[str]) -> str:
    out = ""
    for p in parts:
        out += p if (p.startswith("[") or not out) else "." + p
    return out


def _patterns(names: list[str], all_names: list[str], limit: int = 3) -> str:
    """Short names for a set of tensors: `encoder.*` when every tensor under `encoder.` is in the set,
    `hidden[*]` when every tensor of every item of the plain list `hidden` is."""
    chosen = set(names)
    split = {n: _name_parts(n) for n in all_names}
    out: list[str] = []
    done: set[str] = set()
    for n in names:
        if n in done:
            continue
        parts = split.get(n) or _name_parts(n)
        pick = n
        for k in range(1, len(parts)):
            under = [m for m in all_names if split[m][:k] == parts[:k] and len(split[m]) > k]
            if len(under) > 1 and all(m in chosen for m in under):
                bracket = all(split[m][k].startswith("[") for m in under)
                pick = _join(parts[:k]) + ("[*]" if bracket else ".*")
                done.update(under)
                break
        done.add(n)
        if pick not in out:
            out.append(pick)
    out.sort(key=lambda p: not p.endswith("*"))  # whole subtrees first
    if len(out) > limit:
        return ", ".join(out[:limit]) + f" and {len(out) - limit} more"
    return ", ".join(out)


def summary_line(rows: list[dict], steps: int, optimizers: list[dict]) -> str:
    total = len(rows)
    if not total:
        return "no parameter tensors were seen"
    classes = list(dict.fromkeys(o.get("class") for o in optimizers if o.get("class")))
    if not classes:
        return f"no optimizer was built: none of the {total} tensors can be updated"
    updated = sum(1 for r in rows if r.get("changed") is True)
    head = f"{updated} of {total} tensor{'s' if total != 1 else ''} updated"
    if not steps:
        head = f"no optimizer step ran: 0 of {total} tensor{'s' if total != 1 else ''} updated"
    target = classes[0] if len(classes) == 1 else "any optimizer"
    missing = [r["qualname"] for r in rows if r.get("requires_grad") and not r.get("optimizers")]
    parts = [head]
    if missing:
        parts.append(f"{len(missing)} never reach {target}: {_patterns(missing, [r['qualname'] for r in rows])}")
    extra = []
    for key, word in (("frozen", "frozen"), ("no-grad", "without a gradient"), ("nonfinite", "non-finite"),
                      ("unregistered", "not registered")):
        n = sum(1 for r in rows if key in r["flags"])
        if n:
            extra.append(f"{n} {word}")
    if extra:
        parts.append(", ".join(extra))
    return "; ".join(parts)


def _subjects(findings: list[dict], rows: list[dict], roots: list[dict]) -> None:
    for f in findings:
        want = _SUBJECT_FLAGS.get(f.get("code", ""))
        if not want:
            continue
        data = f.get("data") or {}
        missing = set(data.get("missing") or [])
        cls = (data.get("model_class") or "").rsplit(".", 1)[-1]
        hits = []
        for r in rows:
            if not any(k in r["flags"] for k in want):
                continue
            if cls and r.get("root") is not None and roots[r["root"]].get("class") != cls \
                    and any(x.get("class") == cls for x in roots):
                continue
            if missing and r["name"] not in missing and r["name"].split(".", 1)[-1] not in missing \
                    and not any(r["name"].startswith(m + ".") for m in missing):
                continue
            hits.append(r)
        for r in hits:
            r["findings"].append(f["id"])


def finding_dict(f: Any, verdict: Any = None) -> dict:
    """A Finding (or an already plain dict) as the view needs it: id, code, message, span, verdict."""
    if isinstance(f, dict):
        d = dict(f)
    else:
        sp = f.span
        d = {"id": f.id, "code": f.code, "message": f.message, "line": sp.line, "col": sp.col,
             "end_line": sp.end_line, "end_col": sp.end_col, "data": dict(getattr(f, "data", {}) or {})}
    if verdict is not None:
        v = verdict.to_dict() if hasattr(verdict, "to_dict") else verdict
        if isinstance(v, dict):
            d["verdict"] = v.get("verdict")
    d.setdefault("verdict", None)
    return d


def flow_view(table: dict | None, findings: Iterable[Any] = (), title: str = "", path: str | None = None,
              stopped: str | None = None) -> dict:
    """The view model of one file's step. `findings`: Finding objects or dicts from finding_dict();
    `stopped`: the error the run stopped at, if it did (said where the picture is empty or partial)."""
    table = table or {}
    steps = int(table.get("steps") or 0)
    roots = list(table.get("roots") or [])
    labels = []
    for r in roots:
        lab = r.get("var") or r.get("class") or "?"
        labels.append(lab)
    rows = []
    for i, src in enumerate(table.get("rows") or []):
        r = dict(src)
        r["index"] = i
        root = r.get("root")
        r["root_label"] = labels[root] if isinstance(root, int) and root < len(labels) else None
        r["qualname"] = r["name"]
        r["flags"] = row_flags(r, steps)
        r["findings"] = []
        r["grad_text"] = fmt(r.get("grad")) if r.get("grad") is not None else "None"
        r["update_text"] = fmt(r.get("update")) if r.get("update") is not None else "n/a"
        rows.append(r)
    # the same name under two roots (a GAN's G and D both have `fc.weight`): qualify with the root
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["name"]] = counts.get(r["name"], 0) + 1
    if len(roots) > 1:
        for r in rows:
            if r["root_label"] and counts[r["name"]] > 1:
                r["qualname"] = f"{r['root_label']}.{r['name']}"
    gscale = LogScale(num(r.get("grad")) for r in rows)
    uscale = LogScale(num(r.get("update")) for r in rows)
    for r in rows:
        r["grad_frac"] = gscale.frac(num(r.get("grad")))
        r["update_frac"] = uscale.frac(num(r.get("update")))
    fl = [finding_dict(f) for f in findings]
    _subjects(fl, rows, roots)
    items: list[dict] = []
    by_root: dict[Any, list[dict]] = {}
    for r in rows:
        by_root.setdefault(r.get("root"), []).append(r)
    for root_idx, rs in by_root.items():
        if root_idx is None:
            items.append({"type": "group", "path": "", "label": "tensors held only by an optimizer",
                          "depth": 0, "class": None, "line": None})
        else:
            root = roots[root_idx]
            lab = labels[root_idx]
            cls = root.get("class")
            items.append({"type": "group", "path": "", "label": lab if lab == cls else f"{lab}: {cls}",
                          "depth": 0, "class": cls, "line": root.get("line")})
        emitted: set[str] = set()
        owners = {k: tuple(v) for k, v in ((roots[root_idx].get("modules") or {}) if root_idx is not None
                                           else {}).items()}
        owners.update({r["owner"]: (r.get("owner_class"), r.get("line")) for r in rs})
        for r in rs:
            parts = _split_path(r["owner"])
            for k in range(1, len(parts) + 1):
                p = ".".join(parts[:k])
                if p in emitted:
                    continue
                emitted.add(p)
                cls, line = owners.get(p, (None, None))
                items.append({"type": "group", "path": p, "label": parts[k - 1], "depth": k, "class": cls,
                              "line": line})
            items.append({"type": "row", "index": r["index"], "depth": len(parts) + 1})
    counts_by_flag = {k: sum(1 for r in rows if k in r["flags"]) for k, *_ in FLAGS}
    return {
        "version": 1,
        "title": title,
        "path": path,
        "stopped": stopped,
        "summary": summary_line(rows, steps, list(table.get("optimizers") or []))
        + (f" (the first {len(rows)} of {table.get('tensors_seen')} tensors)"
           if table.get("truncated") and (table.get("tensors_seen") or 0) > len(rows) else ""),
        "steps": steps,
        "backward": int(table.get("backward") or 0),
        "mode": table.get("mode"),
        "truncated": bool(table.get("truncated")),
        "unused_roots": list(table.get("unused_roots") or []),
        "optimizers": list(table.get("optimizers") or []),
        "roots": roots,
        "rows": rows,
        "items": items,
        "findings": [f for f in fl if any(f["id"] in r["findings"] for r in rows)],
        "legend": [{"flag": k, "text": t, "light": c, "dark": d, "count": counts_by_flag[k]} for k, t, c, d in FLAGS],
        "scales": {"grad": gscale.ticks(), "update": uscale.ticks()},
        "updated": sum(1 for r in rows if r.get("changed") is True),
        "total": len(rows),
    }


def choose_table(script: dict | None, others: Iterable[dict] = ()) -> dict | None:
    """The table to show for a file: the script run's when it saw tensors, else the first model-only run's."""
    cands = [script or {}] + [o or {} for o in others]
    best = None
    for obs in cands:
        t = obs.get("flow")
        if not isinstance(t, dict) or not t.get("rows"):
            continue
        if best is None or (t.get("steps") and not best.get("steps")):
            best = t
        if best.get("steps"):
            break
    return best
