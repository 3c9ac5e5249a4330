"""Verdicts for the numerics findings (GP301-GP308) from the live step's probes: the range each probed
sub-expression took in the real run, and, when the run never reached the edge (a zero denominator, a log
of 0), what the edge run showed once Gradpath forced the value there. Pure Python (no torch).
"""
from __future__ import annotations

from gradpath.live.forcing import EDGE_VALUE, unforceable
from gradpath.live.numfmt import finite, fmt, num
from gradpath.live.verdicts import (BCE_ERROR, CONFIRMED, DEFAULT_PROBE_KIND, NOT_REPRODUCED, NOT_RUN, Verdict,
                                    _first, exception_verdict, failure_reason)

# what "the edge" means for each probe kind, in words
EDGE_WORDS = {"denominator": "== 0", "log-arg": "== 0", "sqrt-arg": "== 0", "std": "== 0",
              "exp-arg": "== 100", "loss-input": ""}
SITE_WORDS = {"denominator": "the quotient", "log-arg": "the log", "sqrt-arg": "the sqrt", "exp-arg": "the exp",
              "std": "the normalized value"}


def _probe_kind(finding) -> str:
    p = finding.data.get("probe") or {}
    return p.get("what") or DEFAULT_PROBE_KIND.get(finding.code, "value")


def _probe_expr(finding) -> str:
    p = finding.data.get("probe") or {}
    return p.get("expr") or "the value"


def _observed_words(kind: str, rec: dict, expr: str) -> str:
    n = rec.get("count", 0)
    times = f"over {n} evaluation{'s' if n != 1 else ''}"
    if rec.get("min") is None and rec.get("nonfinite"):
        return f"observed {expr} non-finite {times}"
    if kind == "denominator":
        return f"observed min |{expr}| = {fmt(rec.get('min_abs'))} {times}"
    if kind in ("log-arg", "sqrt-arg", "std"):
        return f"observed min {expr} = {fmt(rec.get('min'))} {times}"
    if kind == "exp-arg":
        return f"observed max {expr} = {fmt(rec.get('max'))} {times}"
    if kind == "loss-input":
        return f"observed {expr} in [{fmt(rec.get('min'))}, {fmt(rec.get('max'))}] {times}"
    return f"observed {expr} in [{fmt(rec.get('min'))}, {fmt(rec.get('max'))}] {times}"


def _nonfinite_outcome(obs: dict) -> tuple[bool, str]:
    """Did the run produce inf/NaN in a loss or a gradient? Words for it."""
    parts = []
    bad = False
    for ev in obs.get("events") or []:
        if ev.get("kind") != "backward":
            continue
        if "value" in ev:
            parts.append(f"loss = {fmt(ev['value'])}")
            if not finite(ev["value"]):
                bad = True
        if ev.get("grads_nonfinite"):
            bad = True
            parts.append("grad non-finite in " + ", ".join(ev["grads_nonfinite"][:4]))
        elif "grads_total" in ev:
            parts.append("grads finite")
        if ev.get("error"):
            parts.append(ev["error"])
        break
    exc = obs.get("exception")
    if exc and obs.get("status") == "exception":
        bad = bad or exc.get("type") in ("ZeroDivisionError", "ValueError", "OverflowError", "RuntimeError")
        parts.append(f"{exc.get('type')}: {_first(exc.get('message'), 160)} (line {exc.get('line')})")
    for w in obs.get("warnings") or []:
        if "nan" in w["message"].lower() or "inf" in w["message"].lower():
            parts.append(_first(w["message"], 160))
    return bad, ", ".join(dict.fromkeys(parts)) or "no backward ran"


def probe_verdict(finding, obs: dict, edge: dict | None) -> Verdict:
    rec = (obs.get("probes") or {}).get(finding.id)
    kind = _probe_kind(finding)
    expr = _probe_expr(finding)
    if finding.code == "GP305" and (finding.severity == "error" or (obs.get("exception") or {})):
        v = exception_verdict(finding, obs, "script", BCE_ERROR)
        if v is not None and v.verdict == CONFIRMED:
            return v
    if not rec or not rec.get("count"):
        if finding.id not in (obs.get("probes_placed") or {}) and finding.data.get("probe"):
            return Verdict(NOT_RUN, "script", f"could not place a probe on `{expr}`", {})
        return Verdict(NOT_RUN, "script", failure_reason(obs, finding), {"status": obs.get("status")})
    data = {"probe": {k: rec.get(k) for k in ("count", "min", "max", "min_abs", "nonfinite", "row_sum_min",
                                              "row_sum_max", "in_unit", "requires_grad", "grad_fn", "shape")},
            "line": rec.get("line"), "expr": expr, "kind": kind}
    observed = _observed_words(kind, rec, expr) + f" (line {rec.get('line')})"
    if kind == "loss-input" or finding.code in ("GP304", "GP305"):
        rs_min, rs_max = num(rec.get("row_sum_min")), num(rec.get("row_sum_max"))
        loss = next((ev.get("value") for ev in obs.get("events") or [] if ev.get("kind") == "backward"
                     and "value" in ev), None)
        loss_words = f"; loss = {fmt(loss)}" if loss is not None else ""
        if finding.code == "GP304":
            d1_min, d1_max = num(rec.get("dim1_sum_min")), num(rec.get("dim1_sum_max"))
            if d1_min is not None and abs(d1_min - 1) < 1e-3 and abs(d1_max - 1) < 1e-3 and rec.get("in_unit") and \
                    not (rs_min is not None and abs(rs_min - 1) < 1e-3 and abs(rs_max - 1) < 1e-3):
                rs_min, rs_max = d1_min, d1_max  # a softmax over the channels (dim 1) of an N, C, H, W output
            if rs_min is not None and abs(rs_min - 1) < 1e-3 and abs(rs_max - 1) < 1e-3 and rec.get("in_unit"):
                return Verdict(CONFIRMED, "script", f"the loss input is already a probability distribution: every "
                               f"row sums to {fmt(rs_min)}, values in [{fmt(rec.get('min'))}, {fmt(rec.get('max'))}]"
                               f" (line {rec.get('line')}){loss_words}; cross_entropy applies softmax again", data)
            return Verdict(NOT_REPRODUCED, "script", f"the loss input does not look like softmax output: "
                           f"row sums in [{fmt(rs_min)}, {fmt(rs_max)}] (line {rec.get('line')})", data)
        # GP305 (warning form): BCE on a sigmoid, or BCEWithLogits on a sigmoid
        if rec.get("in_unit"):
            return Verdict(CONFIRMED, "script", f"the loss input is already squashed into [0, 1]: values in "
                           f"[{fmt(rec.get('min'))}, {fmt(rec.get('max'))}] (line {rec.get('line')}){loss_words}", data)
        return Verdict(NOT_REPRODUCED, "script", f"the loss input ranges over [{fmt(rec.get('min'))}, "
                       f"{fmt(rec.get('max'))}]: not a probability", data)
    site = rec.get("site") or {}
    site_text = (obs.get("probe_sites") or {}).get(finding.id)
    if site_text and "\n" not in site_text and len(site_text) <= 80:
        site_name = f"`{site_text}`"
    else:
        site_name = SITE_WORDS.get(kind, "the expression")
    hit_now = (site.get("nonfinite") or 0) > 0 or (rec.get("nonfinite") or 0) > 0
    mn, mabs, mx = num(rec.get("min")), num(rec.get("min_abs")), num(rec.get("max"))
    if kind == "denominator" and mabs == 0 or kind == "log-arg" and mn is not None and mn <= 0 or \
            kind in ("sqrt-arg", "std") and mn == 0 or kind == "exp-arg" and mx is not None and mx > 88:
        hit_now = True
    if hit_now and not (site.get("nonfinite") or 0) and not (rec.get("nonfinite") or 0):
        # the value reached its edge but the operation's result stayed finite (sqrt(0) = 0): what went
        # wrong, if anything, is in the backward pass
        base_bad, base_words = _nonfinite_outcome(obs)
        if base_bad:
            data["site"] = site
            edge_word = {"sqrt-arg": "exactly 0", "std": "exactly 0", "denominator": "exactly 0"}.get(kind, "at its edge")
            return Verdict(CONFIRMED, "script", f"{observed}; the real run already hit the edge: {expr} was "
                           f"{edge_word} there, {site_name} stays finite, but backward gave: {base_words}", data)
        hit_now = False
    if hit_now:
        what = site_name
        ex = site.get("example")
        data["site"] = site
        return Verdict(CONFIRMED, "script", f"{observed}; the real run already hit the edge: {what} "
                       f"{'= ' + fmt(ex) if ex is not None else 'is not finite'}", data)
    erec = ((edge or {}).get("probes") or {}).get(finding.id) or {}
    why_not = unforceable(rec, erec)
    if why_not:
        data["unforced"] = why_not
        return Verdict(NOT_REPRODUCED, "script", f"{observed}, and it never reached its edge; `{expr}` is "
                       f"{why_not}, so Gradpath does not force it to {EDGE_VALUE.get(kind, 'its edge')}", data)
    if edge is None:
        return Verdict(NOT_RUN, "script", f"{observed}; the edge case was not driven (time limit)", data)
    if not erec.get("forced"):
        return Verdict(NOT_RUN, "script", f"{observed}; could not drive {expr} to the edge: "
                       f"{failure_reason(edge, finding)}", data)
    at = f"at {expr} {EDGE_WORDS.get(kind, '')}".rstrip()
    esite = erec.get("site") or {}
    parts = []
    bad = False
    if (esite.get("nonfinite") or 0) > 0:
        bad = True
        parts.append(f"{site_name} = {fmt(esite.get('example'))}")
    elif esite.get("count"):
        parts.append(f"{site_name} stays finite")
    if erec.get("edge_grad_finite") is False:
        bad = True
        parts.append(f"the gradient reaching `{expr}` is {fmt(erec.get('edge_grad_example'))}")
    base_bad, _ = _nonfinite_outcome(obs)
    if not base_bad:
        e_bad, e_words = _nonfinite_outcome(edge)
        if e_bad or not parts:
            parts.append(e_words)
            bad = bad or (e_bad and not esite.get("count"))
    words = ", ".join(parts) or "nothing observable"
    data["edge"] = {"site": esite, "grad_finite": erec.get("edge_grad_finite"), "words": words}
    if bad:
        value = EDGE_VALUE.get(kind, "its edge")
        data["forced"] = {"expr": expr, "value": value}
        return Verdict(CONFIRMED, "script", f"{at} (forced by Gradpath): {words}; the run itself did not get "
                       f"there ({observed}): this shows the consequence, not that your data reaches the edge", data)
    return Verdict(NOT_REPRODUCED, "script", f"{observed}; even {at} the result and its gradient stay finite "
                   f"({words})", data)
