// Thin wrappers around the VS Code API, so the logic modules (settings, interpreter, status) stay
// free of `vscode` and can be tested with node's test runner.
import * as os from "os";
import * as vscode from "vscode";
import { ConfigReader, PathContext } from "./settings";

export const PYTHON_EXTENSION_ID = "ms-python.python";

/** The folder whose settings apply: the active file's, else the first workspace folder. */
export function activeFolder(): vscode.WorkspaceFolder | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  const folder = doc ? vscode.workspace.getWorkspaceFolder(doc.uri) : undefined;
  return folder ?? vscode.workspace.workspaceFolders?.[0];
}

export function config(folder: vscode.WorkspaceFolder | undefined = activeFolder()): ConfigReader {
  const cfg = vscode.workspace.getConfiguration("gradpath", folder?.uri);
  return { get: <T>(key: string, dflt: T) => cfg.get<T>(key, dflt) as T };
}

export function pathContext(folder: vscode.WorkspaceFolder | undefined = activeFolder()): PathContext {
  return { workspaceFolder: folder?.uri.fsPath, home: os.homedir() };
}

// The parts of the Python extension's exported API that we use (its `environments` API).
interface PythonEnvironmentsApi {
  getActiveEnvironmentPath(resource?: vscode.Uri | vscode.WorkspaceFolder): { id: string; path: string };
  resolveEnvironment(
    env: { id: string; path: string } | string,
  ): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  onDidChangeActiveEnvironmentPath: vscode.Event<{ id: string; path: string; resource?: unknown }>;
}

async function pythonEnvironments(): Promise<PythonEnvironmentsApi | undefined> {
  const ext = vscode.extensions.getExtension(PYTHON_EXTENSION_ID);
  if (!ext) {
    return undefined;
  }
  const api = ext.isActive ? ext.exports : await ext.activate();
  const envs = (api as { environments?: PythonEnvironmentsApi } | undefined)?.environments;
  return envs && typeof envs.getActiveEnvironmentPath === "function" ? envs : undefined;
}

export function hasPythonExtension(): boolean {
  return vscode.extensions.getExtension(PYTHON_EXTENSION_ID) !== undefined;
}

/** The active environment's interpreter per the Python extension; undefined without it. */
export async function pythonExtensionInterpreter(folder?: vscode.WorkspaceFolder): Promise<string | undefined> {
  const envs = await pythonEnvironments();
  if (!envs) {
    return undefined;
  }
  const active = envs.getActiveEnvironmentPath(folder?.uri);
  const resolved = await envs.resolveEnvironment(active);
  return resolved?.executable.uri?.fsPath ?? active?.path;
}

/** Calls `listener` when the user picks another environment in the Python extension. */
export async function onPythonEnvironmentChange(listener: () => void): Promise<vscode.Disposable | undefined> {
  const envs = await pythonEnvironments();
  return envs?.onDidChangeActiveEnvironmentPath(() => listener());
}

export async function openSetting(key: string): Promise<void> {
  await vscode.commands.executeCommand("workbench.action.openSettings", key);
}

/** Logger whose verbosity follows `gradpath.trace.server` (off: info and up; messages: debug; verbose: trace). */
export class Logger {
  constructor(readonly channel: vscode.LogOutputChannel, private level: () => string) {}

  private allows(kind: "debug" | "trace"): boolean {
    const lvl = this.level();
    return kind === "debug" ? lvl === "messages" || lvl === "verbose" : lvl === "verbose";
  }

  info(msg: string): void {
    this.channel.info(msg);
  }
  warn(msg: string): void {
    this.channel.warn(msg);
  }
  error(msg: string): void {
    this.channel.error(msg);
  }
  debug(msg: string): void {
    if (this.allows("debug")) {
      this.channel.info(`[debug] ${msg}`);
    }
  }
  trace(msg: string): void {
    if (this.allows("trace")) {
      this.channel.info(`[trace] ${msg}`);
    }
  }
}
