"""How live verdicts read: what the words confirmed / not-reproduced / not-run mean (the CLI prints
it once per run, the hover next to the verdict, docs/usage.md at length), and the headline of a
verdict: "confirmed by forcing `p` to 0" when a GP3 finding was confirmed only by setting a probed
value to its edge. Pure Python (no torch)."""
from __future__ import annotations

# what each verdict word means (the CLI prints it once, the hover next to the verdict, docs/usage.md)
VERDICT_MEANING = {
    "confirmed": "the live step showed the bug: PyTorch raised the error, the parameters stayed unchanged, "
                 "or the value turned inf/NaN in a real step of your script (or, when it says \"by forcing\", "
                 "once Gradpath set that value to its edge: the consequence is real, whether your data "
                 "reaches the edge is not shown)",
    "not-reproduced": "the step ran this code and did not show the bug: a false alarm, or a bug this run's "
                      "data and iterations do not trigger",
    "not-run": "the step could not get to this code (the reason is given: data on disk, network, a time "
               "limit...): nothing is known either way",
}


def headline(v: dict | None) -> str:
    """The verdict as people read it: `confirmed by forcing `p` to 0` for a forced edge."""
    if not v:
        return "not-run"
    word = v.get("verdict") or "not-run"
    forced = (v.get("data") or {}).get("forced")
    if word == "confirmed" and isinstance(forced, dict) and forced.get("expr"):
        return f"confirmed by forcing `{forced['expr']}` to {forced.get('value', 'its edge')}"
    return word
