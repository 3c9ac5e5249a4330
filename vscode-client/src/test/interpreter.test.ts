import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { ExecFn, probeInterpreter, problemMessage, resolveInterpreter, serverCommand } from "../interpreter";

const ROOT = path.resolve(__dirname, "..", "..", "..");

test("the setting wins over the Python extension", async () => {
  let asked = false;
  const r = await resolveInterpreter({
    setting: "${workspaceFolder}/.venv/bin/python",
    pythonExtension: async () => {
      asked = true;
      return "/ext/python";
    },
    ctx: { workspaceFolder: "/ws" },
  });
  assert.deepEqual(r, { python: "/ws/.venv/bin/python", source: "setting" });
  assert.equal(asked, false);
});

test("the Python extension's environment when the setting is blank", async () => {
  const r = await resolveInterpreter({ setting: "  ", pythonExtension: async () => "/ext/python" });
  assert.deepEqual(r, { python: "/ext/python", source: "python-extension" });
});

test("python3 on the PATH without the Python extension, or when it fails", async () => {
  assert.deepEqual(await resolveInterpreter({}), { python: "python3", source: "path" });
  assert.deepEqual(await resolveInterpreter({ pythonExtension: async () => undefined }), { python: "python3", source: "path" });
  const failing = await resolveInterpreter({
    pythonExtension: async () => {
      throw new Error("extension host hiccup");
    },
  });
  assert.deepEqual(failing, { python: "python3", source: "path" });
});

test("the server command line", () => {
  assert.deepEqual(serverCommand("/v/bin/python"), { command: "/v/bin/python", args: ["-m", "gradpath", "serve"] });
});

test("probe: a missing interpreter is 'not-found' with a clear message", async () => {
  const p = await probeInterpreter("/nonexistent/bin/python3");
  assert.equal(p.status, "not-found");
  const msg = problemMessage({ python: "/nonexistent/bin/python3", source: "setting" }, p);
  assert.match(msg, /\/nonexistent\/bin\/python3 \(set in gradpath.interpreter\) does not exist/);
  assert.match(msg, /gradpath.interpreter/);
});

test("probe: a Python without gradpath is 'no-gradpath'", async () => {
  // -I: isolated mode, so neither PYTHONPATH nor the user's site-packages can supply gradpath.
  const isolated: ExecFn = async (file, args, t) => {
    const { nodeExec } = await import("../interpreter");
    return nodeExec(file, ["-I", ...args], t);
  };
  const p = await probeInterpreter("/usr/bin/python3", isolated);
  assert.equal(p.status, "no-gradpath", JSON.stringify(p));
  assert.match(p.detail ?? "", /gradpath/);
  assert.match(problemMessage({ python: "/usr/bin/python3", source: "path" }, p), /gradpath is not installed for \/usr\/bin\/python3 \(found on the PATH\)/);
});

test("probe: the project's venv has gradpath and its server", async (t) => {
  const venv = path.join(ROOT, ".venv", "bin", "python");
  if (!fs.existsSync(venv)) {
    t.skip("no .venv in this checkout");
    return;
  }
  const p = await probeInterpreter(venv);
  const hasServer = fs.existsSync(path.join(ROOT, "server", "gradpath", "lsp", "server.py"));
  assert.equal(p.status, hasServer ? "ok" : "no-server", JSON.stringify(p));
  assert.match(p.version ?? "", /^\d+\.\d+/);
  assert.ok(p.executable && p.executable.length > 0);
});

test("probe: garbage output and spawn errors are 'broken', not a crash", async () => {
  const garbage: ExecFn = async () => ({ code: 1, stdout: "", stderr: "Fatal Python error: init_fs_encoding" });
  const p = await probeInterpreter("/x/python", garbage);
  assert.equal(p.status, "broken");
  assert.match(p.detail ?? "", /init_fs_encoding/);
  const weird: ExecFn = async () => ({ code: null, stdout: "", stderr: "", spawnError: Object.assign(new Error("EMFILE"), { code: "EMFILE" }) });
  assert.equal((await probeInterpreter("/x/python", weird)).status, "broken");
});

test("probe: gradpath without its language server is 'no-server'", async () => {
  const os = await import("node:os");
  const { execFile } = await import("node:child_process");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gp-probe-"));
  fs.mkdirSync(path.join(dir, "gradpath"));
  fs.writeFileSync(path.join(dir, "gradpath", "__init__.py"), "__version__ = '9.9.9'\n");
  const withPath: ExecFn = (file, args, t) =>
    new Promise((resolve) => {
      execFile(file, ["-S", ...args], { timeout: t, env: { PYTHONPATH: dir, PATH: process.env.PATH } }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout: String(stdout), stderr: String(stderr) }),
      );
    });
  try {
    const p = await probeInterpreter("/usr/bin/python3", withPath);
    assert.equal(p.status, "no-server", JSON.stringify(p));
    assert.equal(p.version, "9.9.9");
    assert.match(problemMessage({ python: "/usr/bin/python3", source: "path" }, p), /cannot start its language server \(No module named 'gradpath.lsp.server'\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
