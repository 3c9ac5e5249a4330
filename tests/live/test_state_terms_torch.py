"""The PyTorch facts behind GP113, GP114 and GP205, checked with real torch (what RULES.md and the
docs pages claim), on the fixtures' own classes where they can run alone."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

pytestmark = pytest.mark.live


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)
        self.aux_head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_gp113_unused_submodule_keeps_grad_none_and_never_changes():
    torch.manual_seed(0)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.aux_head.weight.detach().clone()
    for _ in range(3):
        loss = F.cross_entropy(model(torch.randn(8, 16)), torch.randint(0, 4, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.aux_head.weight.grad is None and model.aux_head.bias.grad is None
    assert model.head.weight.grad is not None
    assert torch.equal(model.aux_head.weight, before)
    # the optimizer does hold them: parameters() lists them
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.aux_head.weight) in held


def test_gp113_ddp_reducer_would_see_unused_parameters():
    """DDP's complaint comes from its reducer: a parameter that gets no gradient in an iteration is
    'not used in producing loss'. Without a process group, the same fact: autograd reaches no
    gradient accumulator of aux_head from the loss."""
    model = Classifier()
    loss = model(torch.randn(2, 16)).sum()
    reached = set()
    todo = [loss.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or id(fn) in reached:
            continue
        reached.add(id(fn))
        if hasattr(fn, "variable"):
            reached.add(("leaf", id(fn.variable)))
        todo.extend(n for n, _ in fn.next_functions)
    assert ("leaf", id(model.head.weight)) in reached
    assert ("leaf", id(model.aux_head.weight)) not in reached


class ProtoNet(nn.Module):
    def __init__(self, dim=16, k=4):
        super().__init__()
        self.encoder = nn.Linear(8, dim)
        self.prototypes = torch.randn(k, dim)

    def forward(self, x):
        return -torch.cdist(self.encoder(x), self.prototypes)


def test_gp114_plain_tensor_missing_from_state_dict_not_moved_not_trained():
    torch.manual_seed(0)
    m = ProtoNet()
    assert "prototypes" not in m.state_dict() and "encoder.weight" in m.state_dict()
    assert all(p is not m.prototypes for p in m.parameters())
    before = m.prototypes.clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    loss = F.cross_entropy(m(torch.randn(8, 8)), torch.randint(0, 4, (8,)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.equal(m.prototypes, before)
    # .to() converts parameters and buffers only: a dtype move leaves the plain tensor behind
    m.to(torch.float64)
    assert m.encoder.weight.dtype == torch.float64 and m.prototypes.dtype == torch.float32
    # a reloaded model gets a different random tensor: the checkpoint did not carry it
    fresh = ProtoNet()
    fresh.load_state_dict(m.to(torch.float32).state_dict())
    assert not torch.equal(fresh.prototypes, m.prototypes)


def test_gp114_buffer_and_parameter_are_saved_and_moved():
    class Fixed(ProtoNet):
        def __init__(self):
            super().__init__()
            self.register_buffer("bank", torch.randn(4, 16))
            self.prototypes = nn.Parameter(torch.randn(4, 16))

    m = Fixed().to(torch.float64)
    sd = m.state_dict()
    assert "bank" in sd and "prototypes" in sd
    assert m.bank.dtype == torch.float64 and m.prototypes.dtype == torch.float64


def test_gp205_dead_term_has_no_grad_fn_and_no_gradient():
    torch.manual_seed(0)
    model = nn.Linear(10, 3)
    x, y = torch.randn(8, 10), torch.randint(0, 3, (8,))
    out = model(x)
    ce = F.cross_entropy(out, y)
    l2 = out.pow(2).mean()
    term_item = 0.01 * l2.item()
    term_detach = 0.01 * l2.detach()
    assert isinstance(term_item, float)
    assert term_detach.grad_fn is None and not term_detach.requires_grad
    loss = ce + term_item + term_detach
    assert loss.grad_fn is not None
    loss.backward()
    with_terms = model.weight.grad.clone()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    # the gradient is exactly the cross-entropy's: the terms moved the value only
    assert torch.equal(model.weight.grad, with_terms)
    assert loss.item() != ce.item()


def test_gp205_argmax_helper_term_has_no_graph():
    out = nn.Linear(4, 3)(torch.randn(5, 4))
    hard = out.argmax(1)
    assert hard.grad_fn is None and not hard.requires_grad
    dice = 1 - (hard == torch.zeros(5, dtype=torch.long)).float().sum() / 5
    assert dice.grad_fn is None
