"""The PyTorch facts behind the in-file modelling (real torch): exp(log_softmax) is a softmax,
exp(logsigmoid) a sigmoid, dtype conversions keep a probability a probability, a sum of one class's
softmax entries over the batch underflows to exactly 0 in float32 (its log is -inf) while a softmax
summed over its own dimension is 1, a DataParallel's parameters are its module's under `module.`,
and Sequential.add_module/append put layers at the end of the forward."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

pytestmark = pytest.mark.live


def test_exp_of_log_probabilities_is_the_probability():
    x = torch.randn(6, 5)
    assert torch.allclose(torch.exp(F.log_softmax(x, dim=1)), torch.softmax(x, dim=1))
    assert torch.allclose(torch.exp(F.logsigmoid(x)), torch.sigmoid(x))


def test_conversions_keep_a_sigmoid_in_unit_interval():
    p = torch.sigmoid(torch.randn(4, 3) * 10)
    for q in (p.type(torch.FloatTensor), p.float(), p.to(torch.float64)):
        assert bool(((q >= 0) & (q <= 1)).all())
    assert p.type(torch.LongTensor).dtype == torch.int64  # labels, not probabilities


def test_sum_of_probabilities_over_the_batch_underflows_to_zero():
    logits = torch.zeros(8, 3)
    logits[:, 0] = 200.0  # class 2 never has a chance
    probs = torch.softmax(logits, dim=1)
    freq = probs.sum(0) / 8
    assert freq[2].item() == 0.0
    assert torch.isinf(torch.log(freq)).any()
    assert torch.allclose(probs.sum(1), torch.ones(8))  # over its own dimension: exactly a distribution


def test_dataparallel_parameters_live_under_module():
    net = nn.Sequential(nn.Linear(4, 3))
    dp = nn.DataParallel(net)
    assert [n for n, _ in dp.named_parameters()] == ["module.0.weight", "module.0.bias"]
    assert dp.module is net


def test_sequential_filled_later_ends_with_the_added_layer():
    seq = nn.Sequential()
    seq.add_module("fc", nn.Linear(4, 3))
    seq.append(nn.Softmax(dim=1))
    out = seq(torch.randn(2, 4))
    assert torch.allclose(out.sum(1), torch.ones(2))
    fc = nn.Linear(4, 3)
    by_ref = nn.Sequential(fc, nn.Softmax(dim=1))
    assert by_ref[0] is fc
