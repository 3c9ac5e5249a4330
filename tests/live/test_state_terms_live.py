"""GP113 / GP114 / GP205 on their fixtures through the real analysis and the live step (real torch):
the unused submodule's parameters keep grad None, the plain tensor is missing from state_dict() and
unchanged after the step, the dead term has no grad_fn while the loss has one."""
from __future__ import annotations

import pytest

from live_helpers import ROOT, confirm_analyzed

pytestmark = pytest.mark.live
FIX = ROOT / "fixtures"


def _verdicts(live, rel):
    path = FIX / rel
    findings, rep = confirm_analyzed(live, path, path.read_text())
    return [(f, rep.verdicts[f.id]) for f in findings]


def test_gp113_confirmed_by_grad_none(live):
    got = [(f, v) for f, v in _verdicts(live, "gp1/gp113_unused_submodule.py") if f.code == "GP113"]
    assert {f.data["attribute"] for f, _ in got} == {"aux_head", "norm", "proj"}
    for f, v in got:
        assert (v.verdict, v.mode) == ("confirmed", "script"), v
        attr = f.data["attribute"]
        assert f"{attr}.weight" in v.evidence and "grad is None after" in v.evidence, v.evidence
        rows = [r for r in v.data["table"] if r["name"].startswith(attr + ".")]
        assert rows and all(r["grad"] is None and r["changed"] is False for r in rows), rows


def test_gp114_confirmed_missing_from_state_dict(live):
    got = [(f, v) for f, v in _verdicts(live, "gp1/gp114_plain_tensor_state.py") if f.code == "GP114"]
    assert {f.data["attribute"] for f, _ in got} == {"prototypes", "proj"}
    for f, v in got:
        assert (v.verdict, v.mode) == ("confirmed", "script"), v
        assert "is not in ProtoNet.state_dict()" in v.evidence, v.evidence
        assert "unchanged after 1 optimizer step(s) while 2 parameter tensor(s) changed" in v.evidence, v.evidence
        assert v.data["attribute"]["in_state_dict"] is False


def test_gp205_confirmed_no_grad_fn(live):
    got = [(f, v) for f, v in _verdicts(live, "gp2/gp205_dead_loss_term.py") if f.code == "GP205"]
    ran = [(f, v) for f, v in got if f.span.line < 33]  # train_epoch() is never called by the script
    assert len(ran) == 4
    for f, v in ran:
        assert (v.verdict, v.mode) == ("confirmed", "script"), (f.message, v)
        assert "has requires_grad=False, grad_fn=None" in v.evidence or "is a Python number, with no graph at all" in v.evidence, v.evidence
        assert "has grad_fn=AddBackward0" in v.evidence, v.evidence
    unrun = [v for f, v in got if f.span.line > 33]
    assert [v.verdict for v in unrun] == ["not-run"]


def test_gp102_forgotten_collection_confirmed(live, tmp_path):
    from live_helpers import write
    path, text = write(tmp_path, "split.py", """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                no_decay.append(p)
            else:
                decay.append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}], lr=1e-2)
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        """)
    findings, rep = confirm_analyzed(live, path, text)
    (f,) = [f for f in findings if f.code == "GP102"]
    assert f.data["missing"] == ["0.bias", "2.bias"] and f.span.line == 5
    v = rep.verdicts[f.id]
    assert (v.verdict, v.mode) == ("confirmed", "script"), v
    assert "0.bias" in v.evidence and "unchanged" in v.evidence, v.evidence
