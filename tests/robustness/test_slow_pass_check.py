"""The language server decides after every fast analysis whether a jedi pass could add anything.
That decision must come from what the fast resolver recorded, not from a second analysis Context
(which cost ~40 ms per document version on 2,000 lines)."""
from gradpath.analysis import engine
from gradpath.analysis.engine import analyze
from gradpath.analysis.resolve import Resolver
from gradpath.lsp.resolvers import ResolverPool

UNRESOLVED = """\
import torch
from nowhere_to_be_found import Net

model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
"""

RESOLVED = """\
import torch

model = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
"""


def test_needs_slow_pass_uses_the_fast_resolvers_record(tmp_path, monkeypatch):
    fast = Resolver(str(tmp_path), use_jedi=True, fast_only=True)
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(UNRESOLVED)
    b.write_text(RESOLVED)
    analyze(UNRESOLVED, str(a), resolver=fast)
    analyze(RESOLVED, str(b), resolver=fast)

    def no_second_context(*args, **kwargs):
        raise AssertionError("needs_slow_pass built a second analysis Context")
    monkeypatch.setattr(engine, "Context", no_second_context)

    assert ResolverPool.needs_slow_pass(fast, UNRESOLVED, str(a)) is True
    assert ResolverPool.needs_slow_pass(fast, RESOLVED, str(b)) is False
    assert ResolverPool.needs_slow_pass(fast, UNRESOLVED, None) is False
    assert ResolverPool.needs_slow_pass(None, UNRESOLVED, str(a)) is False


def test_needs_slow_pass_survives_a_failing_resolver():
    class Broken:
        def needs_slow_pass(self, ctx):
            raise RuntimeError("boom")
    assert ResolverPool.needs_slow_pass(Broken(), UNRESOLVED, "/tmp/x.py") is False
