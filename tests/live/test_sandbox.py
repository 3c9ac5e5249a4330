"""The live step as an attack surface: user code that loops forever, allocates without bound, forks,
opens sockets, writes or deletes files, reads secrets or prints megabytes. Each is stopped within
the limits and reported, nothing is written outside the step's temporary folder, and the worker is
replaced when it dies."""
from __future__ import annotations

import os
import textwrap
import time

import pytest

from live_helpers import finding, line_of, write

pytestmark = pytest.mark.live

# every abuse script also carries a real bug (GP101 at the end) so there is a finding to report on
BUG = "\nimport torch\nopt = torch.optim.Adam([], lr=0.1)\n"


def confirm(live, path, text, code="GP101", needle="Adam([]", timeout_s=None):
    f = finding(code, line_of(text, needle))
    t = time.monotonic()
    rep = live.confirm(str(path), text, [f], timeout_s=timeout_s)
    return rep, rep.verdicts[f.id], time.monotonic() - t


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def sandbox_dirs(tmp_path):
    proj = tmp_path / "project"
    outside = tmp_path / "outside"
    proj.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    return proj, outside


def test_infinite_loop_times_out(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "spin.py", "import itertools\nn = sum(1 for _ in itertools.count())\n" + BUG)
    rep, v, took = confirm(live, path, text, timeout_s=2.0)
    assert v.verdict == "not-run"
    assert v.evidence.startswith("timed out after 2 s at line 2")
    assert took < 2.0 + 4.0
    assert live.warm


def test_while_true_pass_times_out_training_while_true_is_cut(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    # a busy loop with nothing in it is not a training loop: it is not rewritten, and the limit stops it
    path, text = write(proj, "wt.py", "while True:\n    pass\n" + BUG)
    rep, v, took = confirm(live, path, text, timeout_s=2.0)
    assert v.verdict == "not-run" and v.evidence.startswith("timed out after 2 s at line 1"), v
    assert took < 2.0 + 4.0
    # `while True:` around training steps is cut to one iteration, and the bug after it still runs
    path, text = write(proj, "wt2.py", "import torch\nstep = 0\nwhile True:\n    step += 1\n"
                       "    torch.randn(3).sum()\n" + BUG)
    rep, v, took = confirm(live, path, text, timeout_s=5.0)
    assert rep.run["script"]["loops"]["3"] == {"entered": 1, "iterations": 1, "cut": True}
    assert v.verdict == "confirmed"


def test_huge_allocation_hits_the_memory_limit(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "alloc.py", "import torch\nx = torch.ones(50 * 1024**3, dtype=torch.uint8)\n" + BUG)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "not-run"
    assert v.evidence.startswith("out of memory at line 2: the memory limit (1024 MB) was exceeded")
    assert "can't allocate memory" in v.evidence
    path, text = write(proj, "alloc2.py", "b = bytearray(50 * 1024**3)\n" + BUG)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "not-run" and "MemoryError" in v.evidence


@pytest.mark.parametrize("code", [
    "import socket\ns = socket.socket()\ns.connect(('1.1.1.1', 80))\n",
    "import socket\nsocket.create_connection(('example.com', 443), timeout=1)\n",
    "import urllib.request\nurllib.request.urlopen('https://download.pytorch.org/x.tar.gz').read()\n",
    "import _socket\ns = _socket.socket(2, 1)\ns.connect(('1.1.1.1', 80))\n",
])
def test_network_is_refused(live, sandbox_dirs, code):
    proj, _ = sandbox_dirs
    path, text = write(proj, "net.py", code + BUG)
    rep, v, took = confirm(live, path, text)
    assert rep.run["status"] == "network", rep.run
    # the script stops at the refused connection; the GP101 after it is settled by the optimizer call alone
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("ValueError: optimizer got an empty parameter list"), v.evidence
    assert "model-only mode (the script could not run whole: needs network" in v.evidence
    assert took < 5


def test_download_falls_back_to_model_only(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    src = """
    import urllib.request
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self, d=6):
            super().__init__()
            self.fc = nn.Linear(d, 2)

        def forward(self, x):
            return self.fc(x)

    urllib.request.urlretrieve("https://example.com/data.pt", "data.pt")
    data = torch.load("data.pt")
    model = Net(d=6)
    optimizer = torch.optim.SGD([model.fc.weight], lr=0.1)
    for x, y in data:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    """
    path, text = write(proj, "dl.py", src)
    f = finding("GP102", line_of(text, "optim.SGD"), 16, model="model", model_class="Net",
                optimizer="optimizer", optimizer_class="SGD", missing=["fc.bias"])
    rep = live.confirm(str(path), text, [f])
    v = rep.verdicts[f.id]
    assert rep.run["status"] == "network"
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("fc.bias: grad ")
    assert "model-only mode (the script could not run whole: needs network" in v.evidence
    assert "built Net(d=6) with input randn(4, 6) for Linear(6, ...)" in v.evidence


def test_missing_data_file_gp101_confirmed_in_model_only_mode(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    src = """
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).mean()

    data = torch.load("/nonexistent/train.pt")
    model = Net()
    optimizer = torch.optim.Adam([], lr=1e-3)
    """
    path, text = write(proj, "nodata.py", src)
    f = finding("GP101", line_of(text, "Adam(["), 28, model="model", model_class="Net")
    rep = live.confirm(str(path), text, [f])
    v = rep.verdicts[f.id]
    assert rep.run["error"]["type"] == "FileNotFoundError"
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("ValueError: optimizer got an empty parameter list (line 14)")
    assert "model-only mode (the script could not run whole: needs data from disk: FileNotFoundError" in v.evidence


def test_writes_and_deletes_stay_in_the_temp_folder(live, sandbox_dirs):
    proj, outside = sandbox_dirs
    before_proj, before_out = snapshot(proj), snapshot(outside)
    src = textwrap.dedent(f"""
    import os, shutil, ctypes, pathlib
    import torch
    open({str(outside / 'written.txt')!r}, "w").write("x")
    open("relative.txt", "w").write("y")
    pathlib.Path("via_pathlib.txt").write_text("z")
    torch.save({{"w": torch.zeros(3)}}, "ckpt.pt")
    os.makedirs({str(outside / 'newdir')!r}, exist_ok=True)
    assert open("relative.txt").read() == "y"
    try:
        os.remove({str(outside / 'victim.txt')!r})
    except OSError:
        pass
    try:
        shutil.rmtree({str(outside)!r})
    except OSError:
        pass
    libc = ctypes.CDLL(None)
    fd = libc.open({str(outside / 'raw.txt').encode()!r}, 0o101, 0o644)
    print("raw fd", fd)
    """) + BUG
    path, text = write(proj, "writer.py", src)
    before_proj.append("writer.py")
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "confirmed", (v, rep.run.get("error"))  # the script ran to the bug
    assert snapshot(proj) == sorted(before_proj)
    assert snapshot(outside) == before_out
    assert (outside / "victim.txt").read_text() == "keep me"
    written = {os.path.basename(f["path"]) for f in rep.run["files_written"]}
    assert {"written.txt", "relative.txt", "via_pathlib.txt", "ckpt.pt"} <= written
    if rep.run["sandbox"]["landlock"]:
        assert "raw fd -1" in rep.run["output"]["stdout"]


def test_fork_bomb_is_refused(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "bomb.py", "import os\nwhile True:\n    os.fork()\n" + BUG)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "not-run"
    assert v.evidence.startswith("the script tried to start a process at line 3")
    path, text = write(proj, "bomb2.py", "import ctypes\nlibc = ctypes.CDLL(None)\nfor i in range(50):\n"
                       "    assert libc.fork() == -1\n" + BUG)
    rep, v, took = confirm(live, path, text)
    if rep.run["sandbox"]["seccomp"]:
        assert v.verdict == "confirmed", rep.run.get("error")  # every raw fork() failed, the script went on
    path, text = write(proj, "sub.py", "import subprocess\nsubprocess.run(['true'])\n" + BUG)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "not-run" and "start a process at line 2" in v.evidence


def test_megabytes_of_output_are_truncated(live, sandbox_dirs, capfd):
    proj, _ = sandbox_dirs
    capfd.readouterr()
    path, text = write(proj, "loud.py", "for i in range(20):\n    print('x' * 1_000_000)\n"
                       "import os\nos.write(1, b'y' * 20_000_000)\n" + BUG)
    rep, v, took = confirm(live, path, text)
    out = rep.run["output"]
    assert out["truncated"] is True
    assert out["stdout_bytes"] > 1_000_000  # it printed a megabyte (the loop is cut to one iteration)
    assert len(out["stdout"]) <= 16 * 1024
    assert len(out["stderr"]) <= 16 * 1024
    assert v.verdict == "confirmed"
    assert took < 10
    # nothing reached this process's stdout/stderr (in the server, stdout is the LSP stream)
    leaked = capfd.readouterr()
    assert "xxxxxxxxxx" not in leaked.out and "yyyyyyyyyy" not in leaked.out
    assert "xxxxxxxxxx" not in leaked.err and "yyyyyyyyyy" not in leaked.err


def test_environment_secrets_are_not_visible(live, sandbox_dirs, monkeypatch):
    proj, _ = sandbox_dirs
    # the service passes a minimal environment to the worker: a secret set in the server's
    # environment must not reach user code, even in a freshly started worker
    from gradpath.live.service import LiveService
    monkeypatch.setenv("GRADPATH_TEST_SECRET_TOKEN", "hunter2-s3cr3t")
    svc = LiveService(timeout_s=10, memory_mb=1024)
    try:
        svc.start()
        path, text = write(proj, "env.py", textwrap.dedent("""
        import os
        print(sorted(os.environ))
        print(os.environ.get("GRADPATH_TEST_SECRET_TOKEN"))
        for pid in (os.getpid(), os.getppid()):
            try:
                print(open(f"/proc/{pid}/environ").read())
            except OSError as exc:
                print("denied", pid)
        """) + BUG)
        rep, v, took = confirm(svc, path, text)
    finally:
        svc.close()
    out = rep.run["output"]["stdout"]
    assert "hunter2-s3cr3t" not in out
    assert "GRADPATH_TEST_SECRET_TOKEN" not in out
    assert "None" in out.splitlines()[1]
    assert v.verdict == "confirmed"


def test_worker_is_replaced_when_it_dies(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "ok.py", BUG)
    rep, v, _ = confirm(live, path, text)
    assert v.verdict == "confirmed"
    old = live._worker.proc.pid
    os.kill(old, 9)
    live._worker.proc.wait(timeout=5)
    rep, v, _ = confirm(live, path, text)
    assert v.verdict == "confirmed"
    assert live._worker.proc.pid != old
    assert live.warm


def test_user_code_cannot_kill_the_worker(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "killer.py", "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\n"
                       "except OSError as e:\n    print('refused', e.errno)\n" + BUG)
    pid = live._worker.proc.pid if live.warm else None
    rep, v, _ = confirm(live, path, text)
    assert v.verdict == "confirmed"
    if pid is not None and rep.run["sandbox"]["seccomp"]:
        assert live._worker.proc.pid == pid and live.warm
        assert "refused 1" in rep.run["output"]["stdout"]


def test_cuda_calls_stay_on_the_cpu(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "cuda.py", textwrap.dedent("""
    import torch
    import torch.nn as nn
    device = torch.device("cuda")
    model = nn.Linear(3, 1).cuda()
    model = model.to("cuda:0")
    x = torch.randn(2, 3, device="cuda")
    y = torch.zeros(2, 1).to(device)
    print(model(x).device, y.device, torch.cuda.is_available())
    """) + BUG)
    rep, v, _ = confirm(live, path, text)
    assert v.verdict == "confirmed", rep.run.get("error")
    assert rep.run["output"]["stdout"].startswith("cpu cpu False")


def test_missing_interpreter_is_a_clear_error(tmp_path):
    from gradpath.live.service import LiveError, LiveService
    with pytest.raises(LiveError, match="does not exist"):
        LiveService(python=str(tmp_path / "no-python")).start()
    fake = tmp_path / "python-without-torch"
    fake.write_text("#!/bin/sh\nexec /usr/bin/env python3 -S -c 'import sys; sys.path[:] = []; import torch'\n")
    fake.chmod(0o755)
    svc = LiveService(python=str(fake))
    try:
        with pytest.raises(LiveError, match="did not start|cannot import torch"):
            svc.confirm(str(tmp_path / "x.py"), "x = 1\n", [])
    finally:
        svc.close()


def test_alarm_ignored_and_os_exit_are_still_bounded(live, sandbox_dirs):
    """User code that ignores the in-process alarm is killed by the worker just after the limit; code
    that ends its own process early is reported, and the worker keeps serving."""
    proj, _ = sandbox_dirs
    path, text = write(proj, "stubborn.py", "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                       "import itertools\nn = sum(1 for _ in itertools.count())\n" + BUG)
    rep, v, took = confirm(live, path, text, timeout_s=1.5)
    assert v.verdict == "not-run" and v.evidence.startswith("timed out after 1.5 s")
    assert took < 1.5 + 4.0
    path, text = write(proj, "bye.py", "import os\nos._exit(0)\n" + BUG)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "not-run" and "os._exit()" in v.evidence
    path, text = write(proj, "after.py", BUG)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "confirmed" and live.warm


def test_user_code_cannot_write_into_the_protocol(live, sandbox_dirs):
    proj, _ = sandbox_dirs
    path, text = write(proj, "forge.py", "import os\nfor fd in range(3, 1024):\n    try:\n"
                       "        os.write(fd, b'{\"id\": 1, \"status\": \"ok\"}\\n')\n    except OSError:\n        pass\n"
                       + BUG)
    rep, v, _ = confirm(live, path, text)
    assert v.verdict == "confirmed"
    path, text = write(proj, "after.py", BUG)
    rep2, v2, _ = confirm(live, path, text)
    assert v2.verdict == "confirmed" and rep2.run["restarts"] == rep.run["restarts"]


def test_removing_a_real_file_outside_succeeds_for_the_script_only(live, sandbox_dirs):
    # `if os.path.exists(LOG): os.remove(LOG)` before training is common: the call succeeds, the script
    # no longer sees the file, and the real file is untouched
    proj, outside = sandbox_dirs
    (outside / "runs").mkdir()
    (outside / "runs" / "old.txt").write_text("old")
    log, runs = outside / "victim.txt", outside / "runs"
    src = textwrap.dedent(f"""
    import os, shutil
    if os.path.exists({str(log)!r}):
        os.remove({str(log)!r})
    if os.path.isdir({str(runs)!r}):
        shutil.rmtree({str(runs)!r})
    print("gone", os.path.exists({str(log)!r}), os.path.isdir({str(runs)!r}))
    with open({str(log)!r}, "a") as f:
        f.write("new")
    print("reads", open({str(log)!r}).read())
    """) + BUG
    path, text = write(proj, "cleaner.py", src)
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "confirmed", (v, rep.run.get("error"))
    assert "gone False False" in rep.run["output"]["stdout"]
    assert "reads new" in rep.run["output"]["stdout"]
    assert log.read_text() == "keep me"
    assert (runs / "old.txt").read_text() == "old"


def test_run_folders_live_under_the_service_root_and_go_with_it(tmp_path):
    # the CLI closes its service right after the last answer, and a killed worker cannot clean up: every
    # run's temporary folder lives under the service's own root, removed by close()
    from gradpath.live.service import LiveService
    svc = LiveService(timeout_s=10.0, memory_mb=1024)
    try:
        svc.start()
        assert svc.wait_ready()
        root = svc._tmp_root
        assert root and os.path.isdir(root)
        path, text = write(tmp_path, "w.py", "import tempfile\nprint('tmp', tempfile.gettempdir())\n"
                                             "open('out.txt', 'w').write('x')\n" + BUG)
        rep, v, took = confirm(svc, path, text)
        assert v.verdict == "confirmed", v
        assert f"tmp {root}{os.sep}gradpath-live-" in rep.run["output"]["stdout"]
        assert not (tmp_path / "out.txt").exists()
    finally:
        svc.close()
    assert not os.path.exists(root)


def test_missing_data_then_empty_optimizer_without_a_model_class(live, sandbox_dirs):
    # no nn.Module class in the file: the model-only step builds the optimizer call alone
    proj, _ = sandbox_dirs
    path, text = write(proj, "nomodel.py", "import torch\nx = torch.load('data/features.pt')\n"
                                           "opt = torch.optim.Adam([], lr=0.1)\n")
    rep, v, took = confirm(live, path, text)
    assert v.verdict == "confirmed" and v.mode == "model-only", v
    assert v.evidence.startswith("ValueError: optimizer got an empty parameter list (line 3)")
    assert ("model-only mode (the script could not run whole: needs data from disk: FileNotFoundError"
            in v.evidence)
    assert "built no model (the optimizer call alone) and ran torch.optim.Adam([], lr=0.1) (line 3)" in v.evidence
