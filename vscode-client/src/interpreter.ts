// Which Python runs the language server, and whether gradpath is importable there. Pure node: no
// `vscode` import (the Python extension is reached through a callback), so it is unit-testable.
import { execFile } from "child_process";
import { expandPath, PathContext } from "./settings";

export type InterpreterSource = "setting" | "python-extension" | "path";

export interface ResolvedInterpreter {
  python: string;
  source: InterpreterSource;
}

export interface ResolveInputs {
  /** The `gradpath.interpreter` setting (raw). */
  setting?: string;
  /** The Python extension's active interpreter, or undefined when it is absent or has none. */
  pythonExtension?: () => Promise<string | undefined>;
  /** Fallback command name. */
  fallback?: string;
  ctx?: PathContext;
}

/** Order: the setting wins; then the Python extension's active environment; then `python3`. */
export async function resolveInterpreter(inputs: ResolveInputs): Promise<ResolvedInterpreter> {
  const fromSetting = expandPath(inputs.setting, inputs.ctx ?? {});
  if (fromSetting) {
    return { python: fromSetting, source: "setting" };
  }
  if (inputs.pythonExtension) {
    try {
      const fromExt = await inputs.pythonExtension();
      if (fromExt && fromExt.trim()) {
        return { python: fromExt.trim(), source: "python-extension" };
      }
    } catch {
      // The Python extension failed to answer: fall through to PATH.
    }
  }
  return { python: inputs.fallback ?? "python3", source: "path" };
}

export type ProbeStatus = "ok" | "not-found" | "no-gradpath" | "no-server" | "broken";

export interface ProbeResult {
  status: ProbeStatus;
  /** gradpath's version when importable. */
  version?: string;
  /** sys.executable of the interpreter. */
  executable?: string;
  /** What went wrong, for the log. */
  detail?: string;
}

// Imports gradpath (a tiny package) and checks that its language server and the libraries it needs
// can be found, without importing them (that would cost a second server start-up).
const PROBE = [
  "import json, sys",
  "from importlib.util import find_spec",
  "out = {'executable': sys.executable}",
  "try:",
  "    import gradpath",
  "    out['version'] = getattr(gradpath, '__version__', '?')",
  "except Exception as e:",
  "    out['error'] = 'gradpath'; out['detail'] = repr(e)",
  "else:",
  "    for mod in ('gradpath.lsp.server', 'pygls', 'lsprotocol'):",
  "        try:",
  "            found = find_spec(mod) is not None",
  "        except Exception as e:",
  "            found = False",
  "        if not found:",
  "            out['error'] = 'server'; out['detail'] = 'No module named ' + repr(mod)",
  "            break",
  "print(json.dumps(out))",
].join("\n");

export type ExecFn = (
  file: string,
  args: string[],
  timeoutMs: number,
) => Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: NodeJS.ErrnoException }>;

export const nodeExec: ExecFn = (file, args, timeoutMs) =>
  new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, windowsHide: true, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: string | number }) | null;
      if (e && typeof e.code === "string") {
        resolve({ code: null, stdout: String(stdout), stderr: String(stderr), spawnError: e });
      } else {
        resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
      }
    });
  });

/** Runs the interpreter once to see whether it exists and can import gradpath's server. */
export async function probeInterpreter(python: string, exec: ExecFn = nodeExec, timeoutMs = 20000): Promise<ProbeResult> {
  const r = await exec(python, ["-c", PROBE], timeoutMs);
  if (r.spawnError) {
    const code = r.spawnError.code;
    if (code === "ENOENT" || code === "EACCES" || code === "ENOTDIR") {
      return { status: "not-found", detail: `${code}: ${python}` };
    }
    return { status: "broken", detail: r.spawnError.message };
  }
  const line = r.stdout.trim().split(/\r?\n/).pop() ?? "";
  let parsed: { executable?: string; version?: string; error?: string; detail?: string } | undefined;
  try {
    parsed = JSON.parse(line);
  } catch {
    parsed = undefined;
  }
  if (!parsed) {
    return { status: "broken", detail: (r.stderr || r.stdout).trim().slice(-2000) || `exit status ${r.code}` };
  }
  if (parsed.error === "gradpath") {
    return { status: "no-gradpath", executable: parsed.executable, detail: parsed.detail };
  }
  if (parsed.error === "server") {
    return { status: "no-server", executable: parsed.executable, version: parsed.version, detail: parsed.detail };
  }
  return { status: "ok", executable: parsed.executable, version: parsed.version };
}

function describeSource(r: ResolvedInterpreter): string {
  switch (r.source) {
    case "setting":
      return "set in gradpath.interpreter";
    case "python-extension":
      return "the Python extension's active environment";
    default:
      return "found on the PATH";
  }
}

/** The notification text for a probe that is not ok. */
export function problemMessage(r: ResolvedInterpreter, probe: ProbeResult): string {
  const where = `${r.python} (${describeSource(r)})`;
  switch (probe.status) {
    case "not-found":
      return `Gradpath: the Python interpreter ${where} does not exist or cannot be run. Set "gradpath.interpreter" to a Python that has gradpath installed.`;
    case "no-gradpath":
      return `Gradpath: gradpath is not installed for ${where}. Install it there or set "gradpath.interpreter" to a Python that has it.`;
    case "no-server":
      return `Gradpath: the gradpath installed for ${where} cannot start its language server (${probe.detail ?? "import failed"}). Reinstall gradpath there or pick another interpreter.`;
    case "broken":
      return `Gradpath: the Python interpreter ${where} failed to run (${(probe.detail ?? "").split("\n").pop()}). Set "gradpath.interpreter" to a working Python.`;
    default:
      return "";
  }
}

/** How the server process is started. */
export function serverCommand(python: string): { command: string; args: string[] } {
  return { command: python, args: ["-m", "gradpath", "serve"] };
}
