"""Shared pieces of the editor end-to-end tests: the built .vsix, a code-server with it installed,
and the folder screenshots go to (artifacts/e2e/). Everything here is installed by
scripts/setup-e2e.sh (`scripts/setup.sh --e2e`, which CI runs)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
CLIENT = ROOT / "vscode-client"
VSIX = CLIENT / "gradpath.vsix"
CODE_SERVER = ROOT / ".e2e" / "code-server" / "node_modules" / ".bin" / "code-server"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
ARTIFACTS = ROOT / "artifacts" / "e2e"
SEED = ROOT / "fixtures" / "seeds" / "seed1_ex2_empty_list.py"

SETUP_HINT = "run `bash scripts/setup-e2e.sh` (CI does it through scripts/setup.sh --e2e)"

BASE_SETTINGS = {
    "security.workspace.trust.enabled": False,
    "workbench.startupEditor": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "extensions.ignoreRecommendations": True,
    "update.mode": "none",
    "telemetry.telemetryLevel": "off",
    "git.enabled": False,
    "workbench.tips.enabled": False,
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "editor.hover.delay": 200,
    "editor.minimap.enabled": False,
    "window.restoreWindows": "none",
}


def require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} missing at {path}: {SETUP_HINT}")
    return path


def _newest_source_mtime() -> float:
    files = [CLIENT / "package.json", CLIENT / "package-lock.json", *(CLIENT / "src").rglob("*.ts")]
    return max(f.stat().st_mtime for f in files if f.exists())


@pytest.fixture(scope="session")
def vsix() -> Path:
    """The extension package, rebuilt when a source is newer than it."""
    if not VSIX.exists() or VSIX.stat().st_mtime < _newest_source_mtime():
        r = subprocess.run(["bash", str(ROOT / "scripts" / "build-vsix.sh")], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"build-vsix.sh failed:\n{r.stdout}\n{r.stderr}"
    return VSIX


@pytest.fixture(scope="session")
def code_server_bin() -> Path:
    return require(CODE_SERVER, "code-server 4.100.3")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    return require(E2E / "node_modules" / "playwright-core", "playwright-core")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifacts_dir(name: str) -> Path:
    d = ARTIFACTS / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


class CodeServer:
    def __init__(self, base: Path, binary: Path):
        self.base = base
        self.binary = binary
        self.user = base / "user"
        self.ext = base / "ext"
        self.config = base / "config.yaml"
        self.log = base / "code-server.log"
        self.env = dict(os.environ, XDG_CONFIG_HOME=str(base / "xdg-config"), XDG_CACHE_HOME=str(base / "xdg-cache"),
                        XDG_DATA_HOME=str(base / "xdg-data"))
        self.env.pop("VSCODE_IPC_HOOK_CLI", None)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.timings: dict[str, float] = {}
        for d in (self.user / "User", self.ext):
            d.mkdir(parents=True, exist_ok=True)
        self.config.write_text("auth: none\ncert: false\n")

    def _args(self) -> list[str]:
        return [str(self.binary), "--config", str(self.config), "--user-data-dir", str(self.user),
                "--extensions-dir", str(self.ext)]

    def write_settings(self, extra: dict) -> None:
        (self.user / "User" / "settings.json").write_text(json.dumps({**BASE_SETTINGS, **extra}, indent=2))

    def install(self, vsix: Path) -> str:
        r = subprocess.run([*self._args(), "--install-extension", str(vsix)], capture_output=True, text=True,
                           env=self.env, timeout=180)
        assert r.returncode == 0, f"--install-extension failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def list_extensions(self) -> list[str]:
        r = subprocess.run([*self._args(), "--list-extensions", "--show-versions"], capture_output=True, text=True,
                           env=self.env, timeout=120)
        assert r.returncode == 0, r.stderr
        return [line.strip() for line in r.stdout.splitlines() if line.strip()]

    def start(self, workspace: Path, trust: bool = False) -> str:
        """trust: keep VS Code's workspace trust on (the folder opens in Restricted Mode)."""
        t0 = time.monotonic()
        try:
            return self._start(workspace, trust)
        finally:
            self.timings["start_s"] = round(time.monotonic() - t0, 2)

    def _start(self, workspace: Path, trust: bool) -> str:
        self.port = free_port()
        logf = open(self.log, "w")
        flags = [] if trust else ["--disable-workspace-trust"]
        self.proc = subprocess.Popen(
            [*self._args(), "--auth", "none", "--bind-addr", f"127.0.0.1:{self.port}", "--disable-telemetry",
             "--disable-update-check", *flags, "--disable-getting-started-override", str(workspace)],
            stdout=logf, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"code-server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return f"http://127.0.0.1:{self.port}/?folder={workspace}"
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"code-server never became healthy: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)

    def extension_host_logs(self) -> str:
        """The window's logs: the Gradpath output channel and the extension host's log."""
        out = []
        for f in sorted((self.user / "logs").rglob("*.log")):
            if "Gradpath" in f.name or "exthost" in f.name or f.parent.name.startswith("output"):
                try:
                    text = f.read_text(errors="replace")
                    keep = 2_000_000 if "Gradpath" in f.name else 6000
                    out.append(f"== {f.relative_to(self.user)}\n{text[-keep:]}")
                except OSError:
                    pass
        return "\n".join(out)


@contextmanager
def code_server(tmp_path: Path, binary: Path, vsix: Path, settings: dict, artifacts: Path):
    cs = CodeServer(tmp_path / "cs", binary)
    t0 = time.monotonic()
    cs.install(vsix)
    cs.timings["install_extension_s"] = round(time.monotonic() - t0, 2)
    cs.write_settings(settings)
    try:
        yield cs
    finally:
        t0 = time.monotonic()
        cs.stop()
        cs.timings["stop_s"] = round(time.monotonic() - t0, 2)
        (artifacts / "timings.json").write_text(json.dumps(cs.timings, indent=2))
        try:
            shutil.copy(cs.log, artifacts / "code-server.log")
            (artifacts / "extension-logs.txt").write_text(cs.extension_host_logs())
        except OSError:
            pass


def run_driver(cfg: dict, timeout: float = 240) -> dict:
    t0 = time.monotonic()
    r = subprocess.run(["node", str(E2E / "vscode_driver.js"), json.dumps(cfg)], capture_output=True, text=True,
                       cwd=E2E, timeout=timeout)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert lines, f"driver printed no report (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads(lines[-1])
    report["driver_s"] = round(time.monotonic() - t0, 2)
    (Path(cfg["shots"]) / "report.json").write_text(json.dumps(report, indent=2))
    return report
