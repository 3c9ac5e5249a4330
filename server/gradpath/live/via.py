"""Confirming findings that sit in a module by running a script that reaches it (server side, no torch).

The softmax at the end of `Net.forward` in `models/net.py` is observed while `train.py` runs: the
worker loads `models/net.py` through its import hook (modhook.py) with the probes and line marks this
plan asks for, and the evidence is mapped back onto the finding in `net.py`.

    plan = ViaPlan(script_path, [Target(path, text, findings, display), ...], script_display)
    report = service.confirm(script_path, script_text, own_findings, via=plan)
    report.via  # {(module path, finding id): Verdict}

Probes: a finding that carries its own probe keeps it (placed in the module). A GP304/GP305/GP303
whose other end is a loss call in the script (`criterion(model(x), y)`, its related information)
is observed at both ends: the model output where the loss receives it (in the script) and the
flagged expression itself (in the module); the loss end wins when it ran. Other GP3 findings probe
the operand of the flagged call or division (`torch.log(probs)`: `probs`) and get an edge run like
a single-file finding.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field, replace

from gradpath.live import verdicts as V

LOSS_INPUT_CODES = ("GP303", "GP304", "GP305")
_LOG_LIKE = {"log", "log2", "log10", "log1p", "sqrt", "rsqrt", "exp", "std", "var", "reciprocal"}


@dataclass
class Target:
    path: str  # absolute
    text: str
    findings: list
    display: str


@dataclass
class _Want:
    target: int
    finding: object  # the finding with the probe it is judged on (data["probe"] filled in)
    module_uid: str | None = None
    use_uid: str | None = None
    use_path: str | None = None
    kind: str | None = None


@dataclass
class ViaPlan:
    script: str
    targets: list[Target]
    script_display: str = ""
    why: dict = field(default_factory=dict)  # (target path, finding id) -> why this script
    sys_path: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.script = os.path.abspath(self.script)
        self.wants: list[_Want] = []
        self.module_probes: dict[int, list[dict]] = {}
        self.script_probes: list[dict] = []
        self.extra_probes: dict[str, list[dict]] = {}  # loss ends in other modules (a Trainer's train())
        self.iterations = 1
        for ti, t in enumerate(self.targets):
            for f in t.findings:
                self.wants.append(self._want(ti, t, f))
                need = (f.data or {}).get("needs_iterations") or (2 if f.code in ("GP401", "GP403", "GP405") else 1)
                self.iterations = max(self.iterations, min(int(need), 3))

    # -- what the worker is asked -------------------------------------------------------------------
    def _want(self, ti: int, t: Target, f) -> _Want:
        uid = f"via{ti}|{f.id}"
        w = _Want(ti, f)
        probe = (f.data or {}).get("probe")
        if probe and probe.get("span"):
            w.module_uid, w.kind = uid, probe.get("what") or V.DEFAULT_PROBE_KIND.get(f.code)
            self.module_probes.setdefault(ti, []).append({"id": uid, "what": w.kind, "span": probe["span"],
                                                          "expr": probe.get("expr")})
            return w
        if f.code not in V.PROBE_CODES:
            return w
        use = _loss_end(f, t.path) if f.code in LOSS_INPUT_CODES else None
        if use is not None:
            w.kind = "loss-input"
            w.use_uid = uid + "|use"
            w.use_path = os.path.abspath(use.path)
            p = {"id": w.use_uid, "what": "loss-input", "span": use.span.to_dict()}
            if w.use_path == self.script:
                self.script_probes.append(p)
            else:
                self.extra_probes.setdefault(w.use_path, []).append(p)
            span, expr = f.span, _segment(t.text, f.span)
        else:
            w.kind = V.DEFAULT_PROBE_KIND.get(f.code, "value")
            span, expr = _operand(t.text, f.span, f.code) or (f.span, _segment(t.text, f.span))
        w.module_uid = uid
        self.module_probes.setdefault(ti, []).append({"id": uid, "what": w.kind, "span": span.to_dict(),
                                                      "expr": expr})
        data = dict(f.data or {})
        data["probe"] = {"what": w.kind, "span": span.to_dict(), "expr": expr or "the value"}
        w.finding = replace(f, data=data)
        return w

    def request_fields(self) -> dict:
        modules = []
        extra = dict(self.extra_probes)
        for ti, t in enumerate(self.targets):
            watch = sorted({line for f in t.findings
                            for line in range(f.span.line, min(f.span.end_line, f.span.line + 50) + 1)})
            modules.append({"path": t.path, "source": t.text, "probes": self.module_probes.get(ti, []) +
                            extra.pop(t.path, []), "watch": watch})
        for path, probes in sorted(extra.items()):
            text = _read(path)
            if text is not None:
                modules.append({"path": path, "source": text, "probes": probes, "watch": []})
        return {"modules": modules, "sys_path": list(self.sys_path)}

    def edge_requests(self, script: dict, base: dict, left: float, room: int,
                      more: dict | None = None) -> list[tuple[str, dict]]:
        """One edge run per module GP3 probe that ran and never reached its edge (as for a file's own);
        a probe only the 4-iteration rerun (`more`) reached is forced with 4 iterations."""
        out = []
        for w in self.wants:
            f = w.finding
            if len(out) >= room or f.code not in V.PROBE_CODES or f.code in LOSS_INPUT_CODES or not w.module_uid:
                continue
            rec = (script.get("probes") or {}).get(w.module_uid)
            iterations = max(2, base.get("iterations", 1))
            if (not rec or not rec.get("count")) and more is not None:
                rec = (more.get("probes") or {}).get(w.module_uid)
                iterations = 4
            if not rec or not rec.get("count") or (rec.get("nonfinite") or 0) > 0:
                continue
            if V.unforceable(rec, None, final=False):
                continue
            out.append((w.module_uid, dict(base, mode="script", edge={"id": w.module_uid, "what": w.kind}, seed=1,
                                           iterations=iterations, timeout_s=max(0.5, left))))
        return out

    # -- what it saw, per finding -------------------------------------------------------------------
    def unreached(self, script: dict) -> list:
        """The module findings whose lines the run did not reach (a rerun with more iterations may)."""
        return [w.finding for w in self.wants
                if not V.reached(module_view(script, self.targets[w.target].path, w.finding, w, self.script),
                                 w.finding)]

    def decide(self, script: dict, edges: dict, timeout_s: float, memory_mb: int, more: dict | None = None) -> dict:
        """`more`: the rerun with 4 iterations (a finding inside `if step % 4 == 0:`), used for the
        findings the first run did not reach."""
        out = {}
        for w in self.wants:
            t = self.targets[w.target]
            f = w.finding
            try:
                obs = script
                view = module_view(obs, t.path, f, w, self.script)
                if more is not None and not V.reached(view, f):
                    mview = module_view(more, t.path, f, w, self.script)
                    if V.reached(mview, f):
                        obs, view = more, mview
                edge = edges.get(w.module_uid) if w.module_uid else None
                eview = module_view(edge, t.path, f, w, self.script) if edge else None
                v = V.decide(f, view, eview, None, timeout_s, memory_mb, V.loop_regions(t.text))
                v = self._explain(v, obs, view, t, f)
                if obs is more:
                    v.data["iterations"] = 4
            except Exception as exc:  # a verdict bug must not lose the other verdicts
                v = V.Verdict(V.NOT_RUN, "none", f"internal error while deciding: {type(exc).__name__}: {exc}", {})
            out[(t.path, f.id)] = v
        return out

    def _explain(self, v, script: dict, view: dict, t: Target, f):
        name = self.script_display or os.path.basename(self.script)
        mo = (script.get("module_obs") or {}).get(t.path) or {}
        v.data["script"] = name
        v.data["reached"] = bool(V.reached(view, f))
        v.data["run_status"] = script.get("status")
        why = self.why.get((t.path, f.id))
        if why:
            v.data["why"] = why
        if v.verdict == V.NOT_RUN and script.get("status") == "ok":
            if not mo.get("loaded"):
                v.evidence = f"it finished without importing {t.display} (line {f.span.line} never ran)"
            elif not V.reached(view, f):
                v.evidence = f"it imported {t.display}, but line {f.span.line} there never ran"
        exc = script.get("exception") or {}
        if v.verdict == V.NOT_RUN and exc and not mo.get("exception_lines") and exc.get("line"):
            v.evidence += f" ({name}, line {exc['line']})"
        before = f"before reaching line {f.span.line}:"
        if before in v.evidence:
            v.evidence = v.evidence.replace(before, f"before reaching line {f.span.line} of {t.display}:")
        if "(line None)" in v.evidence and exc.get("line"):
            v.evidence = v.evidence.replace("(line None)", f"({name}, line {exc['line']})")
        v.evidence = f"ran {name}: {v.evidence}"
        return v


def module_view(obs: dict | None, path: str, finding, want: _Want, script_path: str) -> dict | None:
    """The run as seen from one module: its line marks, loops, probes, the frames of an exception
    and of events that passed through it (the script's own line numbers are not this file's)."""
    if obs is None:
        return None
    mo = (obs.get("module_obs") or {}).get(path) or {}
    view = dict(obs)
    view["lines"] = dict(mo.get("lines") or {})
    view["loops"] = dict(mo.get("loops") or {})
    probes = obs.get("probes") or {}
    rec, placed = None, {}
    use = probes.get(want.use_uid) if want.use_uid else None
    if use and use.get("count") and V.reached(view, finding):  # (else the loss got another model's output)
        rec = dict(use, line=f"{use.get('line')} of {os.path.basename(want.use_path or script_path)}")
        placed = {finding.id: (obs.get("probes_placed") or {}).get(want.use_uid)}
    elif want.module_uid:
        rec = probes.get(want.module_uid)
        if rec and rec.get("line") is not None:
            rec = dict(rec, line=f"{rec['line']} of {os.path.basename(path)}")
        if want.module_uid in (mo.get("probes_placed") or {}):
            placed = {finding.id: mo["probes_placed"][want.module_uid]}
    if not mo.get("loaded"):  # the run never imported the module: no probe could be placed there
        placed = {finding.id: None}
    view["probes"] = {finding.id: rec} if rec else {}
    view["probes_placed"] = placed
    view["probe_sites"] = {}  # (the worker knows the script's text only: no site text for a module)
    exc = obs.get("exception")
    if exc:
        lines = list(mo.get("exception_lines") or [])
        here = {r.span.line for r in getattr(finding, "related", []) or []
                if getattr(r, "path", None) and os.path.abspath(r.path) == script_path}
        script_hits = [l for l in exc.get("user_lines") or [] if l in here]
        view["exception"] = dict(exc, line=lines[-1] if lines else None, user_lines=lines + script_hits,
                                 script_line=exc.get("line"))
    events = []
    for ev in obs.get("events") or []:
        st = list((ev.get("mstack") or {}).get(path) or [])
        events.append(dict(ev, stack=st, line=st[-1] if st else None))
    view["events"] = events
    return view


def _loss_end(finding, here: str):
    """The related entry (in another file) where the loss receives the model's output, if any."""
    for r in getattr(finding, "related", None) or []:
        p = getattr(r, "path", None)
        if p and os.path.abspath(p) != here and ("loss" in r.message.lower() or "goes to" in r.message):
            return r
    return None


def _read(path: str) -> str | None:
    from gradpath.live.reach import _read as read
    return read(path)


def _segment(text: str, span) -> str | None:
    lines = text.splitlines()
    if not (1 <= span.line <= len(lines)) or span.line != span.end_line:
        return None
    return lines[span.line - 1][span.col:span.end_col] or None


def _operand(text: str, span, code: str):
    """The operand of the flagged call/division (`torch.log(probs)` -> `probs`), as (Span, text)."""
    from gradpath.analysis.findings import Span
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = text.splitlines()

    def char_col(line: int, byte_col: int) -> int:
        raw = lines[line - 1].encode("utf-8")
        return len(raw[:byte_col].decode("utf-8", errors="replace"))

    def span_of(n) -> Span:
        return Span(n.lineno, char_col(n.lineno, n.col_offset), n.end_lineno, char_col(n.end_lineno, n.end_col_offset))

    for n in ast.walk(tree):
        if not isinstance(n, (ast.Call, ast.BinOp)) or getattr(n, "lineno", None) != span.line:
            continue
        if span_of(n) != span:
            continue
        inner = None
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            inner = n.right
        elif isinstance(n, ast.Call):
            fn = n.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name in _LOG_LIKE:
                if n.args:
                    inner = n.args[0]
                elif isinstance(fn, ast.Attribute):
                    inner = fn.value  # probs.log()
        if inner is None:
            return None
        sp = span_of(inner)
        return sp, ast.get_source_segment(text, inner)
    return None
