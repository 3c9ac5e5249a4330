"""Verdicts for module state that training never touches and for dead loss terms (GP113, GP114,
GP205), from what the live worker observed. Pure Python (no torch).

- GP113: the submodule's parameters still have `grad is None` after backward (per-parameter table).
- GP114: the plain tensor attribute is missing from `state_dict()` and unchanged after the step.
- GP205: the term's value and that it has no grad_fn, while the loss backwarded with it has one.
"""
from __future__ import annotations

from gradpath.live import verdicts as V
from gradpath.live.verdicts import CONFIRMED, NOT_REPRODUCED, NOT_RUN, Verdict

STATE_CODES = ("GP113", "GP114", "GP205")


def decide(finding, script: dict, model_only: dict | None) -> Verdict | None:
    if finding.code == "GP113":
        return _gp113(finding, script, "script") or (
            _gp113(finding, model_only, "model-only") if model_only and model_only.get("status") == "ok" else None)
    if finding.code == "GP114":
        return _gp114(finding, script, "script") or (
            _gp114(finding, model_only, "model-only") if model_only and model_only.get("status") == "ok" else None)
    if finding.code == "GP205":
        return _gp205(finding, script)
    return None


def _gp113(finding, obs: dict | None, mode: str) -> Verdict | None:
    if not obs or not obs.get("modules"):
        return None
    attr = finding.data.get("attribute") or ""
    rows = [r for r in V.model_rows(obs, finding) if r["name"] == attr or r["name"].startswith(attr + ".")]
    if not rows:
        return None
    backs = obs.get("backward_count", 0)
    table = "\n".join("  " + V.row_text(r) for r in rows[:12])
    data = {"table": V.table_data(rows), "backward": backs, "steps": obs.get("step_count", 0)}
    if not backs:
        return Verdict(NOT_RUN, mode, f"no backward() ran, so nothing can be said about {attr}'s gradients\n"
                       + table, data)
    got = [r for r in rows if V.num(r.get("grad")) is not None]
    others = [r for r in V.model_rows(obs, finding) if r not in rows and (V.num(r.get("grad")) or 0) > 0]
    if got:
        return Verdict(NOT_REPRODUCED, mode, f"{got[0]['name']} got a gradient ({V.fmt(got[0].get('grad'))}): "
                       f"{attr} is used in the loss after all\n" + table, data)
    names = ", ".join(r["name"] for r in rows[:4]) + (f" and {len(rows) - 4} more" if len(rows) > 4 else "")
    unchanged = all(r.get("changed") is False for r in rows)
    head = (f"{names}: grad is None after {backs} backward() call(s)"
            + (", unchanged" if unchanged else "")
            + (f", while {len(others)} other parameter tensor(s) of the model got gradients" if others else "")
            + f": nothing that produced the loss used {attr}")
    return Verdict(CONFIRMED, mode, head + "\n" + table, data)


def _gp114(finding, obs: dict | None, mode: str) -> Verdict | None:
    if not obs or not obs.get("modules"):
        return None
    attr = finding.data.get("attribute") or ""
    want = V.short_class(finding.data.get("model_class"))
    mods = [m for m in obs["modules"] if m.get("root")]
    picked = [m for m in mods if m.get("class") == want] or mods
    for m in picked:
        ent = next((p for p in m.get("plain_state") or [] if p["name"] == attr), None)
        if ent is None:
            continue
        steps = obs.get("step_count", 0)
        data = {"model": m["class"], "attribute": ent, "steps": steps}
        if ent.get("in_state_dict"):
            return Verdict(NOT_REPRODUCED, mode, f"{attr} is in {m['class']}.state_dict()", data)
        changed = ent.get("changed")
        moved = [p for p in m.get("params") or [] if p.get("changed")]
        tail = ""
        if changed is False and steps:
            tail = (f"; it is unchanged after {steps} optimizer step(s)"
                    + (f" while {len(moved)} parameter tensor(s) changed" if moved else ""))
        elif changed:
            tail = "; the program changes it in place (it is state), yet a checkpoint would still lose it"
        head = (f"{m['class']}.{attr} (shape {ent.get('shape')}) is not in {m['class']}.state_dict() "
                f"({ent.get('state_keys')} key(s)), so a checkpoint loses it and .to() does not move it{tail}")
        return Verdict(CONFIRMED, mode, head, data)
    return None


def _gp205(finding, obs: dict) -> Verdict | None:
    rec = (obs.get("probes") or {}).get(finding.id)
    p = finding.data.get("probe") or {}
    expr = p.get("expr") or "the term"
    if not rec or not rec.get("count"):
        return None
    bline = finding.data.get("backward_line")
    backs = [b for b in V._events(obs, "backward") if not b.get("error")]
    b = next((b for b in backs if b.get("line") == bline), None)
    if "requires_grad" in rec:
        what = f"has requires_grad={rec['requires_grad']}, grad_fn={rec.get('grad_fn')}"
        dead = not rec["requires_grad"] and rec.get("grad_fn") is None
    else:
        what = f"is a Python {rec.get('type') or 'number'}, with no graph at all"
        dead = True
    value = ""
    if rec.get("min") is not None:
        value = f" = {V.fmt(rec['min'])}" if rec.get("min") == rec.get("max") else \
            f" in [{V.fmt(rec['min'])}, {V.fmt(rec['max'])}]"
    data = {"term": rec, "backward": b}
    if not dead:
        return Verdict(NOT_REPRODUCED, "script", f"`{expr}` (line {rec.get('line')}){value} carries a graph: it {what}",
                       data)
    if b is None:
        return Verdict(NOT_RUN, "script", f"`{expr}` (line {rec.get('line')}){value} {what}, but the backward at "
                       f"line {bline} did not run", data)
    loss = f"grad_fn={b.get('grad_fn')}" if b.get("grad_fn") else "a graph"
    got = (b.get("grads_total") or 0) - (b.get("grads_none") or 0)
    return Verdict(CONFIRMED, "script",
                   f"`{expr}` (line {rec.get('line')}){value} {what}, while the loss backwarded at line {bline} "
                   f"has {loss} ({got} parameter tensor(s) got gradients, none through this term): it moves the loss "
                   f"value only", data)
