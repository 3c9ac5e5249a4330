"""Models imported from the user's other modules: the fast resolver answers at the first publish;
what only jedi can answer arrives in a second publish, never delaying the first."""
from __future__ import annotations

import textwrap

from lsp_helpers import Recorder, change_doc, client, open_doc, uri_of  # noqa: F401

MODELS = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(10, 10)
        self.linear = nn.Linear(10, 1)

    def forward(self, x):
        return self.linear(self.stem(x))
"""

TRAIN = """
import torch
{imp}

model = Net()
opt = torch.optim.Adam([model.linear.weight], lr=0.1)
loss = model(torch.randn(2, 10)).sum()
loss.backward()
opt.step()
"""


def _write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


async def test_sibling_module_resolved_in_the_first_publish(client, tmp_path):
    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net")})
    rec = Recorder(client)
    uri = uri_of(tmp_path / "train.py")
    open_doc(client, uri, (tmp_path / "train.py").read_text())
    p = await rec.wait_for(lambda p: p.uri == uri)
    (d,) = p.diagnostics
    assert d.code == "GP102"
    assert d.data["data"]["missing"] == ["stem.weight", "stem.bias", "linear.bias"]


async def test_jedi_pass_republishes_in_the_background(client, tmp_path):
    ext = tmp_path / "ext"
    _write(tmp_path, {"ext/userlib/__init__.py": "", "ext/userlib/netdefs.py": MODELS})
    imp = f"import sys\nsys.path.append({str(ext)!r})\nfrom userlib.netdefs import Net"
    _write(tmp_path, {"proj/train.py": TRAIN.format(imp=imp)})
    rec = Recorder(client)
    uri = uri_of(tmp_path / "proj" / "train.py")
    open_doc(client, uri, (tmp_path / "proj" / "train.py").read_text())
    first = await rec.wait_for(lambda p: p.uri == uri)
    assert list(first.diagnostics) == []  # the fast path cannot see ext/
    second = await rec.wait_for(lambda p: p.uri == uri and p.diagnostics, timeout=60)
    assert second.version == first.version == 1
    assert [d.code for d in second.diagnostics] == ["GP102"]
    assert second.diagnostics[0].data["data"]["missing"][-1] == "linear.bias"

    # typing elsewhere in the file: the answer is kept (the very next publish still has the
    # GP102, no flicker back to nothing), and jedi is not asked again
    text = (tmp_path / "proj" / "train.py").read_text()
    for v in range(2, 6):
        text += f"x{v} = {v}\n"
        change_doc(client, uri, text, v)
        p = await rec.wait_for(lambda p, v=v: p.uri == uri and p.version == v, timeout=30)
        assert [d.code for d in p.diagnostics] == ["GP102"], v


async def test_a_module_changed_on_disk_reanalyses_its_importers(client, tmp_path):
    from lsprotocol import types

    _write(tmp_path, {"models.py": MODELS, "train.py": TRAIN.format(imp="from models import Net")})
    rec = Recorder(client)
    uri = uri_of(tmp_path / "train.py")
    open_doc(client, uri, (tmp_path / "train.py").read_text())
    p = await rec.wait_for(lambda p: p.uri == uri)
    assert p.diagnostics[0].data["data"]["missing"] == ["stem.weight", "stem.bias", "linear.bias"]
    import os
    import time
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(MODELS).replace("        self.stem = nn.Linear(10, 10)\n", "")
                      .replace("self.linear(self.stem(x))", "self.linear(x)"))
    st = models.stat()
    os.utime(models, (st.st_atime, time.time() + 5))
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=uri_of(models), type=types.FileChangeType.Changed)]))
    p = await rec.wait_for(lambda p: p.uri == uri and p.diagnostics
                           and p.diagnostics[0].data["data"]["missing"] == ["linear.bias"])
