"""Turn what the live worker observed into one verdict per finding.

Pure Python (no torch): the worker reports observations (exceptions, per-parameter tables, probe
ranges, backward/step events, warnings); this module decides `confirmed` / `not-reproduced` /
`not-run` for each finding, with evidence in words (first line = summary) and data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# when a forced edge counts (service.py, via.py), and how verdicts read (the words' meanings, "confirmed by
# forcing `p` to 0")
from gradpath.live.forcing import unforceable  # noqa: F401 - V.unforceable: service.py, via.py
from gradpath.live.verdict_words import VERDICT_MEANING, headline  # noqa: F401 - used by the CLI and the hover
# numbers read back and written in words (one format with the report: numfmt.py)
from gradpath.live.numfmt import fmt, num  # noqa: F401 - V.fmt/V.num: verdicts_*.py

CONFIRMED, NOT_REPRODUCED, NOT_RUN = "confirmed", "not-reproduced", "not-run"

# codes whose bug is an exception PyTorch raises: (exception type, text it contains)
EXCEPTION_CODES = {
    "GP101": ("ValueError", "optimizer got an empty parameter list"),
    "GP107": ("ValueError", "optimizer got an empty parameter list"),
    "GP111": ("ValueError", "optimizer got an empty parameter list"),
    "GP109": ("TypeError", "'method' object is not iterable"),
    "GP110": ("TypeError", ("object is not iterable", "optimizer can only optimize Tensors")),
    "GP201": ("RuntimeError", "does not require grad"),
    "GP202": ("RuntimeError", "does not require grad"),
}
BCE_ERROR = ("RuntimeError", "should be between 0 and 1")
# codes confirmed by the per-parameter table
TABLE_CODES = {"GP102", "GP103", "GP104", "GP105", "GP106", "GP108", "GP112", "GP204"}
PROBE_CODES = {"GP301", "GP302", "GP303", "GP304", "GP305", "GP306", "GP307", "GP308"}
DEFAULT_PROBE_KIND = {"GP301": "denominator", "GP302": "log-arg", "GP303": "log-arg", "GP304": "loss-input",
                      "GP305": "loss-input", "GP306": "sqrt-arg", "GP307": "exp-arg", "GP308": "std"}
# codes a model-only step (the model class alone, the optimizer as written) can settle
MODEL_ONLY_CODES = {"GP101", "GP109", "GP110", "GP102", "GP104", "GP105", "GP108", "GP112", "GP113", "GP114"}


@dataclass
class Verdict:
    verdict: str
    mode: str  # "script" | "model-only" | "none"
    evidence: str
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "mode": self.mode, "evidence": self.evidence, "data": self.data}


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------

def lines_reached(obs: dict) -> set[int]:
    return {int(k) for k in (obs.get("lines") or {})}


def reached(obs: dict, finding) -> bool:
    hits = lines_reached(obs)
    s = finding.span
    return any(line in hits for line in range(s.line, s.end_line + 1))


def short_class(name: str | None) -> str | None:
    return name.rsplit(".", 1)[-1] if name else None


def failure_reason(obs: dict, finding=None, timeout_s: float | None = None, memory_mb: int | None = None) -> str:
    """Why a run could not show anything about `finding` (for a not-run verdict)."""
    status = obs.get("status")
    exc = obs.get("exception") or {}
    line = exc.get("line")
    at = f" at line {line}" if line else ""
    if status == "timeout":
        t = f"{timeout_s:g} s" if timeout_s else "the time limit"
        return f"timed out after {t}{at} (the wall-clock limit)"
    if status == "memory":
        m = f" ({memory_mb} MB)" if memory_mb else ""
        msg = _first(exc.get("message"))
        return f"out of memory{at}: the memory limit{m} was exceeded ({exc.get('type')}{': ' + msg if msg else ''})"
    if status == "network":
        net = (obs.get("network") or [{}])[0]
        target = net.get("target")
        where = f" at line {net.get('line')}" if net.get("line") else at
        return f"needs network: the script tried to reach {target or 'the network'}{where} (the live step runs offline)"
    if status == "process":
        p = (obs.get("processes") or [{}])[0]
        where = f" at line {p.get('line')}" if p.get("line") else at
        return f"the script tried to start a process{where}; the live step does not allow that"
    if status == "exit":
        # argparse and friends say why on stderr (`error: the following arguments are required: --data`)
        err = [l.strip() for l in str((obs.get("stderr") or {}).get("text") or "").splitlines() if l.strip()]
        why = f": {_first(err[-1], 200)}" if err and "error" in err[-1].lower() else ""
        return f"the script exited{at} with {exc.get('message')}{why}"
    if status == "killed":
        sig = obs.get("signal")
        return f"the step was killed{' by signal ' + str(sig) if sig else ''} (a resource limit)"
    if status == "internal-error":
        return f"internal error in the live step: {_first(obs.get('internal_error') or obs.get('error'))}"
    if status == "exception":
        et, msg = exc.get("type"), _first(exc.get("message"))
        if et in ("FileNotFoundError", "IsADirectoryError", "NotADirectoryError") or \
                (et in ("OSError", "RuntimeError") and "No such file" in (exc.get("message") or "")):
            return f"needs data from disk: {et}: {msg}{at}"
        if et in ("SyntaxError", "IndentationError", "TabError"):
            return f"the file does not compile: {et}: {msg}{at}"
        if et in ("ModuleNotFoundError", "ImportError"):
            from gradpath.live.frameworks import missing_reason  # pytorch_lightning, accelerate, ignite...
            return missing_reason(obs) or f"needs a package the interpreter lacks: {et}: {msg}{at}"
        before = f" before reaching line {finding.span.line}" if finding is not None and not reached(obs, finding) \
            else ""
        return f"crashed in user code{at}{before}: {et}: {msg}"
    if status == "ok" and finding is not None:
        return f"line {finding.span.line} never ran (the script finished without reaching it)"
    return f"the step did not run ({status})"


def _first(text: Any, limit: int = 300) -> str:
    s = str(text or "").strip().splitlines()
    s = s[0] if s else ""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def run_ok(obs: dict | None) -> bool:
    return bool(obs) and obs.get("status") == "ok"


# ------------------------------------------------------------------------------------------------
# per-parameter table
# ------------------------------------------------------------------------------------------------

def model_rows(obs: dict, finding) -> list[dict]:
    """Rows {model, name, grad, changed, optimizers, registered} for the models the finding is about."""
    want = short_class(finding.data.get("model_class"))
    mods = [m for m in obs.get("modules") or [] if m.get("params")]
    if finding.code == "GP112":
        mods = [m for m in mods if m.get("in_forward")] or mods
    elif want:
        picked = [m for m in mods if m.get("class") == want and m.get("root")]
        if picked:
            mods = picked
    else:
        mods = [m for m in mods if m.get("root")]
    same = {}
    for m in mods:
        same[m["class"]] = same.get(m["class"], 0) + 1
    rows = []
    for m in mods[:8]:
        label = m["class"] + (f" (line {m['line']})" if same[m["class"]] > 1 and m.get("line") else "")
        for p in m["params"]:
            rows.append(dict(p, model=label, model_line=m.get("line"), in_forward=m.get("in_forward")))
    return rows


def row_text(r: dict, opt_names: list[str] | None = None) -> str:
    g = num(r.get("grad"))
    grad = "no grad" if g is None else f"grad {fmt(g)}"
    ch = r.get("changed")
    changed = "changed" if ch else ("unchanged" if ch is False else "not compared")
    opts = r.get("optimizers") or []
    where = ("in " + ", ".join(opts)) if opts else (
        "not in " + " or ".join(opt_names) if opt_names else "in no optimizer")
    extra = "" if r.get("registered", True) else ", not registered"
    return f"{r['name']}: {grad}, {changed}, {where}{extra}"


def table_data(rows: list[dict]) -> list[dict]:
    return [{"model": r["model"], "name": r["name"], "grad": r.get("grad"), "changed": r.get("changed"),
             "optimizers": r.get("optimizers") or [], "registered": r.get("registered", True),
             "shape": r.get("shape")} for r in rows[:60]]


def _opt_words(obs: dict, finding) -> str:
    opts = obs.get("optimizers") or []
    want = short_class(finding.data.get("optimizer_class"))
    o = next((o for o in opts if o["class"] == want), opts[0] if opts else None)
    return o["label"] if o else "any optimizer"


def table_verdict(finding, obs: dict, mode: str) -> Verdict | None:
    from gradpath.live.verdicts_tensors import qualified  # which tensor names the evidence cites
    rows = qualified(finding, model_rows(obs, finding))
    code = finding.code
    if not rows:
        return None
    steps = obs.get("step_count", 0)
    got_grad = [r for r in rows if (num(r.get("grad")) or 0) > 0]
    if code == "GP204":
        bad = [r for r in rows if r.get("optimizers") and not (num(r.get("grad")) or 0) and r.get("changed") is False]
        expl = "in the optimizer but never got a gradient from the loss, so they never changed"
    elif code == "GP112":
        bad = [r for r in rows if r.get("in_forward") and not r.get("optimizers")]
        expl = "created inside forward() on every call, in no optimizer"
    else:
        bad = [r for r in got_grad if not r.get("changed") and r.get("changed") is not None
               and not _in_named_optimizer(r, obs, finding)]
        if code == "GP102" and finding.data.get("missing"):
            missing = set(finding.data["missing"])
            bad = [r for r in bad if r["name"] in missing or r["name"].split(".", 1)[-1] in missing] or bad
        expl = "got gradients but never changed: no optimizer updates them"
        if code in ("GP104", "GP105"):
            kinds = ("held-module",) if code == "GP104" else ("plain-tensor", "held-tensor")
            unreg = [r for r in rows if not r.get("registered", True) and r.get("kind", kinds[0]) in kinds]
            bad = [r for r in unreg if not r.get("optimizers")] or bad
            expl = "not registered in the model: missing from parameters(), so no optimizer holds them"
            if any((num(r.get("grad")) or 0) > 0 and r.get("changed") is False for r in bad):
                expl += "; they get gradients and never change"
    opt_names = [o["label"] for o in obs.get("optimizers") or []][:3]
    labels = list(dict.fromkeys(r["model"] for r in rows))
    if len(labels) > 1 or code == "GP112":
        out = []
        for lab in labels:
            mine = [r for r in rows if r["model"] == lab][:15]
            line = mine[0].get("model_line")
            where = "" if "(line" in lab or not line else f" (line {line})"
            out.append(f"  {lab}{where}{' (built inside forward)' if mine[0].get('in_forward') else ''}:")
            out += ["    " + row_text(r, opt_names) for r in mine]
        table = "\n".join(out[:40])
    else:
        table = "\n".join("  " + row_text(r, opt_names) for r in rows[:30])
    data = {"table": table_data(rows), "steps": steps, "backward": obs.get("backward_count", 0)}
    if code == "GP112" and bad:
        created = obs.get("created_in_forward") or {}
        n = sum(created.values())
        head = (f"{len(bad)} parameter tensor(s) {expl}" + (f" ({n} layer instance(s) built in forward during "
                                                           f"the run)" if n else ""))
        return Verdict(CONFIRMED, mode, head + "\n" + table, data)
    if steps == 0 and code not in ("GP104", "GP105", "GP112"):
        return Verdict(NOT_RUN, mode, "no optimizer step ran, so nothing can be said about which parameters "
                       "change\n" + table, data)
    if bad:
        owner = ""
        if len(labels) > 1:
            lab = bad[0]["model"]
            line = bad[0].get("model_line")
            owner = f"{lab}{'' if '(line' in lab or not line else f' (line {line})'}: "
        if len(bad) == 1:
            head = f"{owner}{row_text(bad[0], opt_names)}: {expl}"
        else:
            names = ", ".join(r["name"] for r in bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
            head = f"{owner}{names}: {expl} (e.g. {row_text(bad[0], opt_names)})"
        return Verdict(CONFIRMED, mode, head + "\n" + table, data)
    if code in ("GP104", "GP105") and not [r for r in rows if not r.get("registered", True)]:
        note = ""
        if code == "GP105":
            note = (" (on the CPU, `.to('cpu')` of a Parameter returns the Parameter itself; "
                    "`.double()`, `.cuda()` on a GPU and arithmetic return plain tensors)")
        return Verdict(NOT_REPRODUCED, mode, "every trainable tensor of the model is registered" + note + "\n" + table,
                       data)
    return Verdict(NOT_REPRODUCED, mode, "every parameter that got a gradient was updated by an optimizer\n" + table,
                   data)


def _in_named_optimizer(row: dict, obs: dict, finding) -> bool:
    return bool(row.get("optimizers"))


# ------------------------------------------------------------------------------------------------
# the decision
# ------------------------------------------------------------------------------------------------

def _exception_match(finding, obs: dict, expected) -> tuple[bool, bool]:
    """(text matches, line matches)"""
    exc = obs.get("exception") or {}
    if not exc:
        return False, False
    et, texts = expected
    texts = (texts,) if isinstance(texts, str) else texts
    ok = exc.get("type") == et and any(t in (exc.get("message") or "") for t in texts)
    s = finding.span
    lines = set(range(s.line, s.end_line + 1)) | {r.span.line for r in getattr(finding, "related", [])}
    if isinstance(finding.data.get("backward_line"), int):
        lines.add(finding.data["backward_line"])
    hit = exc.get("line") in lines or any(l in lines for l in exc.get("user_lines") or [])
    return ok, hit


def explains_error(finding, obs: dict) -> bool:
    """Is the run's exception the one this finding predicts, at its line?"""
    expected = EXCEPTION_CODES.get(finding.code) or (BCE_ERROR if finding.code == "GP305" else None)
    if expected is None:
        return False
    ok, hit = _exception_match(finding, obs, expected)
    return ok and hit


EMPTY_LIST_CODES = {"GP101", "GP107", "GP111"}


def empty_group_verdict(finding, obs: dict, mode: str) -> Verdict | None:
    """An empty list inside a param-group dict raises nothing: PyTorch accepts an empty group. The
    bug is then an optimizer, built on the finding's lines, with a group that holds no tensor."""
    want = short_class(finding.data.get("optimizer_class"))
    lo, hi = finding.span.line - 3, finding.span.end_line
    for o in obs.get("optimizers") or []:
        groups = o.get("groups") or []
        if not (lo <= (o.get("line") or 0) <= hi) or (want and o.get("class") != want):
            continue
        empty = [i for i, n in enumerate(groups) if n == 0]
        if empty:
            which = ("every parameter group" if len(empty) == len(groups)
                     else "parameter group " + ", ".join(str(i) for i in empty))
            return Verdict(CONFIRMED, mode, f"{o['label']} (line {o['line']}) was built with {len(groups)} "
                           f"parameter group(s) (tensors per group: {groups}): {which} is empty. PyTorch raised no "
                           f"error, and nothing in an empty group can train",
                           {"optimizer": o["label"], "line": o["line"], "groups": groups})
    return None


def exception_verdict(finding, obs: dict, mode: str, expected) -> Verdict | None:
    exc = obs.get("exception") or {}
    ok, hit = _exception_match(finding, obs, expected)
    if ok and (hit or mode == "model-only"):
        line = exc.get("line")
        ev = f"{exc['type']}: {exc['message']} (line {line})"
        return Verdict(CONFIRMED, mode, ev, {"exception": exc.get("type"), "message": exc.get("message"),
                                             "line": line, "traceback": exc.get("traceback")})
    if obs.get("status") == "ok" and reached(obs, finding):
        return Verdict(NOT_REPRODUCED, mode, f"line {finding.span.line} ran without raising {expected[0]}",
                       {"lines": _hits(obs, finding)})
    if exc and hit:
        return Verdict(NOT_REPRODUCED, mode, f"line {exc.get('line')} raised a different error: "
                       f"{exc.get('type')}: {_first(exc.get('message'))}",
                       {"exception": exc.get("type"), "message": exc.get("message"), "line": exc.get("line")})
    return None


def _hits(obs, finding):
    lines = obs.get("lines") or {}
    return {str(l): lines.get(str(l)) for l in range(finding.span.line, finding.span.end_line + 1)
            if str(l) in lines}


def _events(obs, kind, region=None):
    out = [e for e in obs.get("events") or [] if e.get("kind") == kind]
    if region is not None:
        return [e for e in out if in_region(e, region)]
    return out


def in_region(e: dict, region) -> bool:
    """An event belongs to a loop when the loop is on its call stack (the call inside the loop that led
    to it, e.g. `self.train_step(x, y)`) or the event's own line is in it."""
    lines = list(e.get("stack") or []) + ([e["line"]] if e.get("line") is not None else [])
    return any(region[0] <= l <= region[1] for l in lines)


def loop_regions(text: str | None) -> list[tuple[int, int]]:
    """(first line, last line) of every for/while statement in the text."""
    if not text:
        return []
    import ast
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return []
    loops = [(n.lineno, n.end_lineno or n.lineno) for n in ast.walk(tree)
             if isinstance(n, (ast.For, ast.While, ast.AsyncFor))]
    funcs = [(n.lineno, n.end_lineno or n.lineno, "def") for n in ast.walk(tree)
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return loops + funcs


def region_of(finding, regions: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The loop a GP4 finding is about: the one at data["loop_line"], else the innermost loop around
    the finding, else the outermost loop that encloses it."""
    if not regions:
        return None
    loops = [r[:2] for r in regions if len(r) == 2]
    funcs = [r[:2] for r in regions if len(r) == 3]
    line = finding.span.line
    ll = finding.data.get("loop_line")
    if ll:
        at = [r for r in loops if r[0] == ll]
        if at:
            return at[0]
    around = [r for r in loops if r[0] <= line <= r[1]]
    fn = [r for r in funcs if r[0] <= line <= r[1]]
    inner_fn = max(fn, key=lambda r: r[0]) if fn else None
    if inner_fn:  # loops of the same function only
        around = [r for r in around if r[0] >= inner_fn[0]]
    if around:
        # the outermost loop: events of inner loops (epochs x batches) belong to it too
        return min(around, key=lambda r: r[0])
    return inner_fn


def loop_verdict(finding, obs: dict, region=None) -> Verdict:
    code = finding.code
    rows = model_rows(obs, finding)
    opt_label = _opt_words(obs, finding)
    backs = _events(obs, "backward", region)
    steps = _events(obs, "step", region)
    want_opt = short_class(finding.data.get("optimizer_class"))
    if want_opt:
        steps = [s for s in steps if (s.get("optimizer") or "").split("#")[0] == want_opt] or steps
    if code != "GP408" and not reached(obs, finding):
        return Verdict(NOT_RUN, "script", failure_reason(obs, finding), {"status": obs.get("status")})
    data = {"backward": obs.get("backward_count", 0), "steps": obs.get("step_count", 0),
            "events": [{k: e.get(k) for k in ("kind", "line", "optimizer", "grads_nonzero", "value")}
                       for e in (obs.get("events") or [])[:20]]}
    if code == "GP401":
        if len(backs) < 2:
            why = failure_reason(obs, finding) if obs.get("status") != "ok" or not reached(obs, finding) else \
                "the loop ran fewer than two iterations"
            return Verdict(NOT_RUN, "script", "fewer than two backward() calls ran in this loop: " + why, data)
        acc_ev = [b for b in backs[1:] if b.get("leftover") and b.get("leftover_examples")]
        if acc_ev and any("leftover_held" in b for b in acc_ev):
            from gradpath.live.verdicts_tensors import gp401_held
            return gp401_held(finding, acc_ev, want_opt, data)
        if acc_ev:
            b = acc_ev[0]
            name, before, after = b["leftover_examples"][0]
            data["grads"] = [{"name": n, "before": x, "after": y} for n, x, y in b["leftover_examples"]]
            data["leftover_tensors"] = b["leftover"]
            return Verdict(CONFIRMED, "script", f"gradients add up across iterations: before the 2nd backward "
                           f"(line {b.get('line')}) {name}.grad norm was still {fmt(before)} from iteration 1 "
                           f"(nothing cleared it), and {fmt(after)} after it; {b['leftover']} tensor(s) "
                           "accumulated", data)
        return Verdict(NOT_REPRODUCED, "script", "gradients were cleared between iterations (None or zero before "
                       "the 2nd backward)", data)
    if code == "GP402" and finding.data.get("accumulation"):
        # a clear that runs more often than the step (gradient accumulation): see live/frameworks.py
        from gradpath.live.frameworks import accumulation_evidence
        seen = accumulation_evidence(finding, [e for e in obs.get("events") or []
                                               if e.get("kind") in ("backward", "step", "zero_grad")
                                               and (region is None or in_region(e, region))])
        if seen[0] == NOT_RUN and obs.get("status") != "ok":
            return Verdict(NOT_RUN, "script", failure_reason(obs, finding), dict(data, **seen[2]))
        return Verdict(seen[0], "script", seen[1], dict(data, **seen[2]))
    if code == "GP402":
        zero_steps = [s for s in steps if s.get("backward_before") and not s.get("grads_nonzero")]
        if zero_steps:
            s = zero_steps[0]
            return Verdict(CONFIRMED, "script", f"{s['optimizer']}.step() (line {s['line']}) ran after backward() "
                           f"with all {s.get('tensors')} gradients cleared (line {finding.span.line}): the step had "
                           "nothing to apply", data)
        if steps:
            return Verdict(NOT_REPRODUCED, "script", "every step() saw non-zero gradients", data)
        return Verdict(NOT_RUN, "script", "no optimizer step ran: " + failure_reason(obs, finding), data)
    if code == "GP403":
        early = [s for s in steps if s.get("fresh_backward") is False]
        if early:
            s = early[0]
            return Verdict(CONFIRMED, "script", f"{s['optimizer']}.step() (line {s['line']}) ran before the first "
                           "backward(): it had no gradients to apply, and from then on each step applies the "
                           "previous iteration's gradients", data)
        if steps:
            return Verdict(NOT_REPRODUCED, "script", "every step() ran after a backward()", data)
        return Verdict(NOT_RUN, "script", "no optimizer step ran: " + failure_reason(obs, finding), data)
    if code == "GP404":
        if not backs:
            return Verdict(NOT_RUN, "script", "no backward() ran in this loop: " + failure_reason(obs, finding), data)
        opts = obs.get("optimizers") or []
        want = short_class(finding.data.get("optimizer_class"))
        cands = [o for o in opts if want is None or o["class"] == want]
        all_steps = _events(obs, "step", region)
        stepped = {s.get("optimizer") for s in all_steps}
        never = [o for o in cands if o["label"] not in stepped]
        if cands and never:
            return Verdict(CONFIRMED, "script", f"backward() ran {len(backs)} time(s) in this loop (line "
                           f"{backs[0].get('line')}) but {never[0]['label']}.step() was never called there"
                           + ("" if never[0]["steps"] else "; it never stepped at all, so its parameters never "
                              "changed"), data)
        if not cands:
            return Verdict(NOT_RUN, "script", "no optimizer was built: " + failure_reason(obs, finding), data)
        return Verdict(NOT_REPRODUCED, "script", f"{opt_label}.step() ran in this loop", data)
    if code == "GP405":
        rec = (obs.get("probes") or {}).get(finding.id)
        if rec and rec.get("count"):
            if rec.get("grad_fn"):
                return Verdict(CONFIRMED, "script", f"the value accumulated at line {rec.get('line')} carries a graph "
                               f"(grad_fn={rec['grad_fn']}) in each of {rec['count']} iteration(s): every "
                               "iteration's graph stays alive", {"probe": rec})
            return Verdict(NOT_REPRODUCED, "script", f"the value accumulated at line {rec.get('line')} carries no "
                           "graph", {"probe": rec})
        return Verdict(NOT_RUN, "script", failure_reason(obs, finding), data)
    if code == "GP406":
        ws = [w for w in obs.get("warnings") or [] if "lr_scheduler.step()" in w["message"]]
        if region is not None:
            ws = [w for w in ws if w.get("line") is None or region[0] <= w["line"] <= region[1]]
        w = ws[0] if ws else None
        if w:
            return Verdict(CONFIRMED, "script", f"PyTorch warned: {_first(w['message'], 400)}",
                           dict(data, warning=w["message"], line=w.get("line")))
        skipped = _skipped_lr(obs, region)
        if skipped:
            return Verdict(CONFIRMED, "script", skipped, data)
        if steps:
            return Verdict(NOT_REPRODUCED, "script", "PyTorch gave no scheduler-order warning", data)
        return Verdict(NOT_RUN, "script", failure_reason(obs, finding), data)
    if code == "GP407":
        want = short_class(finding.data.get("model_class"))
        evals = [b for b in backs if any(not t and (want is None or c == want)
                                         for c, t in (b.get("training") or {}).items())]
        if evals:
            b = evals[0]
            cls = next(c for c, t in b["training"].items() if not t and (want is None or c == want))
            layers = next((m.get("mode_layers") for m in obs.get("modules") or [] if m["class"] == cls), [])
            extra = (f"; its {', '.join(layers)} layers behave as in evaluation" if layers else
                     "; it has no Dropout/BatchNorm layers, so this run is unaffected")
            return Verdict(CONFIRMED, "script", f"{cls}.training was False at backward() (line {b.get('line')})"
                           + extra, data)
        if backs:
            return Verdict(NOT_REPRODUCED, "script", "the model was in training mode at every backward()", data)
        return Verdict(NOT_RUN, "script", "no backward() ran: " + failure_reason(obs, finding), data)
    return Verdict(NOT_RUN, "script", f"the live step has no check for {code}", {})


def _skipped_lr(obs: dict, region) -> str | None:
    """A scheduler stepped before its optimizer's first step: the lr that first step used is not the
    schedule's first value."""
    events = obs.get("events") or []
    scheds = obs.get("schedulers") or []
    for i, e in enumerate(events):
        if e.get("kind") != "sched_step" or (region is not None and not in_region(e, region)):
            continue
        sid = e.get("scheduler")
        if not isinstance(sid, int) or sid >= len(scheds):
            continue
        sch = scheds[sid]
        # this scheduler's optimizer must not have stepped since the scheduler was built
        first = next((x for x in events[i + 1:] if x.get("kind") == "step" and x.get("optimizer") == e.get("optimizer")),
                     None)
        earlier = [x for x in events[:i] if x.get("kind") == "sched_step" and x.get("scheduler") == sid]
        if first is None or earlier:
            continue
        if first.get("lr") is not None and sch.get("initial_lr") is not None and \
                num(first["lr"]) != num(sch["initial_lr"]):
            return (f"{sch['class']} (line {sch.get('line')}) starts the schedule at lr = {fmt(sch['initial_lr'])}, but "
                    f"its step() at line {e.get('line')} ran first, so the first {first.get('optimizer')}.step() "
                    f"(line {first.get('line')}) used lr = {fmt(first['lr'])}: the first value was skipped "
                    "(PyTorch did not warn because this optimizer had stepped before)")
    return None


def gp203_verdict(finding, obs: dict, mode: str) -> Verdict | None:
    backs = [b for b in _events(obs, "backward") if not b.get("error")]
    if not backs:
        return None
    after = [b for b in backs if (b.get("line") or 0) >= finding.span.line] or backs
    b = after[0]
    if b.get("grads_total") and b.get("grads_none") == b.get("grads_total"):
        return Verdict(CONFIRMED, mode, f"backward() (line {b.get('line')}) ran without error, but all "
                       f"{b['grads_total']} parameter tensors still have grad None: nothing reaches the model",
                       {"backward": b})
    return Verdict(NOT_REPRODUCED, mode, f"after backward() (line {b.get('line')}) "
                   f"{b.get('grads_total', 0) - b.get('grads_none', 0)} parameter tensors have gradients",
                   {"backward": b})


def _backward_value_note(finding, obs: dict) -> str | None:
    """What reached backward(): the probe on the value (GP2)."""
    rec = (obs.get("probes") or {}).get(finding.id)
    p = finding.data.get("probe") or {}
    if not rec or p.get("what") != "backward-value" or "requires_grad" not in rec:
        return None
    return (f"the value reaching backward() (`{p.get('expr')}`, line {rec.get('line')}) has "
            f"requires_grad={rec['requires_grad']}, grad_fn={rec.get('grad_fn')}")


def decide(finding, script: dict | None, edge: dict | None = None, model_only: dict | None = None,
           timeout_s: float | None = None, memory_mb: int | None = None,
           regions: list[tuple[int, int]] | None = None) -> Verdict:
    code = finding.code
    if code == "GP000" and finding.data.get("incomplete"):
        return Verdict(NOT_RUN, "none", "the analysis stopped at its time limit; this is not a finding "
                       "about your code", {})
    if code == "GP000" or code.startswith("GP0"):
        return Verdict(NOT_RUN, "none", "the file has a syntax error; nothing can run", {})
    if script is None:
        return Verdict(NOT_RUN, "none", "the live step did not run", {})
    status = script.get("status")
    if status in ("timeout", "memory", "network", "process", "killed", "internal-error"):
        reason = failure_reason(script, finding, timeout_s, memory_mb)
    else:
        reason = None

    v: Verdict | None = None
    if code in EXCEPTION_CODES:
        v = exception_verdict(finding, script, "script", EXCEPTION_CODES[code])
        if v is not None and v.verdict == NOT_REPRODUCED and code in EMPTY_LIST_CODES:
            v = empty_group_verdict(finding, script, "script") or v
        if v is None and model_only:
            v = exception_verdict(finding, model_only, "model-only", EXCEPTION_CODES[code])
            if v is None and model_only.get("status") == "ok":
                v = Verdict(NOT_REPRODUCED, "model-only", "the optimizer was built without an error in "
                            "model-only mode", {"model_only": model_only.get("model_only")})
    elif code in TABLE_CODES:
        if status == "ok" and reached(script, finding) and script.get("step_count", 0):
            v = table_verdict(finding, script, "script")
        elif status == "ok" and code in ("GP104", "GP105", "GP112") and script.get("backward_count"):
            v = table_verdict(finding, script, "script")
        if v is None and model_only and model_only.get("status") == "ok":
            v = table_verdict(finding, model_only, "model-only")
        if v is None and status == "ok" and reached(script, finding):
            v = table_verdict(finding, script, "script")
    elif code == "GP203":
        v = gp203_verdict(finding, script, "script")
    elif code == "GP204":
        v = table_verdict(finding, script, "script")
    elif code in PROBE_CODES:
        if reason is None:
            from gradpath.live.verdicts_probes import probe_verdict  # its own module: probe ranges, forced edges
            v = probe_verdict(finding, script, edge)
    elif code.startswith("GP4") and code != "GP408":
        if reason is None or code in ("GP401", "GP404", "GP406"):
            v = loop_verdict(finding, script, region_of(finding, regions or []))
            if v.verdict == NOT_RUN and reason:
                v = None
    elif code in ("GP113", "GP114", "GP205"):
        from gradpath.live import verdicts_state  # its own module: module state and dead loss terms
        v = verdicts_state.decide(finding, script, model_only)
    elif code == "GP408":
        hits = _hits(script, finding)
        if hits:
            hooked = [m for m in script.get("modules") or [] if m.get("root") and m.get("forward_hooks")]
            if hooked:
                m = hooked[0]
                v = Verdict(CONFIRMED, "script", f"line {finding.span.line} ran {sum(hits.values())} time(s) and "
                            f"{m['class']} has {m['forward_hooks']} forward hook(s) that calling forward() directly "
                            "skips", {"lines": hits})
            else:
                v = Verdict(NOT_REPRODUCED, "script", f"line {finding.span.line} ran {sum(hits.values())} time(s); "
                            "no forward hooks are registered on the model, so calling forward() directly changes "
                            "nothing in this run", {"lines": hits})
    if v is None:
        why = reason or failure_reason(script, finding, timeout_s, memory_mb)
        data = {"status": status}
        exc = script.get("exception")
        if exc:
            data["exception"] = {k: exc.get(k) for k in ("type", "message", "line", "traceback")}
        if model_only is not None and model_only.get("status") != "ok":
            mo_exc = model_only.get("exception") or {}
            why += f"; model-only mode failed too: {mo_exc.get('type')}: {_first(mo_exc.get('message'))}"
        v = Verdict(NOT_RUN, "none", why, data)
    if code in ("GP201", "GP202", "GP203") and v.mode == "script":
        note = _backward_value_note(finding, script)
        if note:
            v.evidence += "\n" + note
            v.data["backward_value"] = (script.get("probes") or {}).get(finding.id)
    if v.verdict == NOT_RUN and v.mode == "script" and (status != "ok" or not reached(script, finding)):
        v.mode = "none"  # nothing of this finding ran
    if v.mode == "model-only" and model_only and model_only.get("model_only"):
        mo = model_only["model_only"]
        if script.get("status") == "ok" and reached(script, finding) and not script.get("step_count"):
            why = f"the script ran line {finding.span.line} but no optimizer step"
        elif script.get("status") == "ok":
            why = f"the script finished without reaching line {finding.span.line}"
        else:
            why = f"the script could not run whole: {failure_reason(script, None)}"
        if model_only.get("status") == "ok":
            if str(mo.get("optimizer") or "").startswith("none"):
                did = (f"built {mo.get('constructed')} with input {mo.get('input')}, one forward and backward; "
                       f"optimizer: {mo.get('optimizer')}")
            else:
                did = (f"built {mo.get('constructed')} with input {mo.get('input')} and {mo.get('optimizer')}, "
                       "one step")
        else:
            did = f"built {mo.get('constructed')} and ran {mo.get('optimizer')} (line {mo.get('optimizer_line')})"
        if mo.get("optimizer_error") and model_only.get("status") == "ok":
            did += f" (the code's optimizer call raised {_first(mo['optimizer_error'], 160)})"
        v.evidence += f"\nmodel-only mode ({why}): {did}"
        v.data["model_only"] = mo
    return v
