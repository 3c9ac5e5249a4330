// Gradpath for VS Code: starts `<python> -m gradpath serve` and connects it through
// vscode-languageclient. Diagnostics, quick fixes, hovers and code lenses come from the server.
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import { GradientFlow } from "./gradientFlow";
import { probeInterpreter, problemMessage, resolveInterpreter, serverCommand } from "./interpreter";
import { ServerSettings, shapeSettings } from "./settings";
import { LiveSummary, ServerState, nextLive, statusBar, summarizeLive } from "./status";
import {
  activeFolder,
  config,
  hasPythonExtension,
  Logger,
  onPythonEnvironmentChange,
  openSetting,
  pathContext,
  pythonExtensionInterpreter,
} from "./vscodeApi";

/** Commands this extension registers itself; a server command of the same name is forwarded. */
const CLIENT_COMMANDS = new Set(["gradpath.restart", "gradpath.checkWorkspace", "gradpath.confirm", "gradpath.showOutput"]);

const DOCUMENT_SELECTOR = [
  { scheme: "file", language: "python" },
  { scheme: "untitled", language: "python" },
  { notebook: "jupyter-notebook", language: "python" },
];

class Gradpath implements vscode.Disposable {
  private readonly channel: vscode.LogOutputChannel;
  private readonly log: Logger;
  private readonly statusItem: vscode.StatusBarItem;
  private client: LanguageClient | undefined;
  private state: ServerState = "stopped";
  private stateDetail: string | undefined;
  private lastLive: LiveSummary | undefined;
  private activity: string | undefined;
  private serverCommands = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  private readonly disposables: vscode.Disposable[] = [];
  private disposed = false;
  private flow: GradientFlow | undefined;

  constructor(private readonly context: vscode.ExtensionContext) {
    this.channel = vscode.window.createOutputChannel("Gradpath", { log: true });
    this.log = new Logger(this.channel, () => config().get<string>("trace.server", "off"));
    this.statusItem = vscode.window.createStatusBarItem("gradpath.status", vscode.StatusBarAlignment.Right, 100);
    this.statusItem.name = "Gradpath";
    this.statusItem.command = "gradpath.showOutput";
    this.setState("stopped");
    this.statusItem.show();
    this.disposables.push(this.channel, this.statusItem);
  }

  register(): void {
    const reg = (id: string, fn: (...args: unknown[]) => unknown) =>
      this.disposables.push(vscode.commands.registerCommand(id, fn));
    reg("gradpath.restart", () => this.restart("restart command"));
    reg("gradpath.showOutput", () => this.channel.show(true));
    reg("gradpath.checkWorkspace", (...args) => this.forward("gradpath.checkWorkspace", args));
    reg("gradpath.confirm", (...args) => this.confirm(args));
    this.flow = new GradientFlow(this.context, () => (this.client?.isRunning() ? this.client : undefined), (m) =>
      this.log.info(m),
    );
    this.disposables.push(this.flow);

    this.disposables.push(
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigChange(e)),
      vscode.workspace.onDidGrantWorkspaceTrust(() => {
        this.log.info("Workspace trusted: the live CPU step is allowed now.");
        this.sendSettings();
      }),
      vscode.extensions.onDidChange(() => this.watchPythonExtension()),
    );
    this.watchPythonExtension();
  }

  // ---- the Python extension -------------------------------------------------------------------
  private pythonWatch: vscode.Disposable | undefined;

  private watchPythonExtension(): void {
    if (this.pythonWatch || !hasPythonExtension()) {
      return;
    }
    onPythonEnvironmentChange(() => {
      if (!config().get<string>("interpreter", "").trim()) {
        this.restart("the Python extension's active environment changed");
      }
    }).then(
      (d) => {
        if (d) {
          this.pythonWatch = d;
          this.disposables.push(d);
        }
      },
      (err) => this.log.warn(`Could not watch the Python extension's environment: ${err}`),
    );
  }

  // ---- settings -------------------------------------------------------------------------------
  settings(): ServerSettings {
    const folder = activeFolder();
    return shapeSettings(config(folder), vscode.workspace.isTrusted, pathContext(folder));
  }

  private sendSettings(): void {
    if (!this.client || !this.client.isRunning()) {
      return;
    }
    const settings = this.settings();
    this.log.debug(`didChangeConfiguration ${JSON.stringify(settings)}`);
    this.client
      .sendNotification(DidChangeConfigurationNotification.type, { settings: { gradpath: settings } })
      .catch((err) => this.log.warn(`Could not send settings: ${err}`));
  }

  private onConfigChange(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration("gradpath")) {
      return;
    }
    if (e.affectsConfiguration("gradpath.interpreter")) {
      this.restart("gradpath.interpreter changed");
      return;
    }
    if (!this.client && e.affectsConfiguration("gradpath.enable") && config().get<boolean>("enable", true)) {
      this.restart("gradpath.enable turned on");
      return;
    }
    this.sendSettings();
  }

  // ---- status ---------------------------------------------------------------------------------
  private setState(state: ServerState, detail?: string): void {
    this.state = state;
    this.stateDetail = detail;
    const { text, tooltip } = statusBar(state, this.lastLive, detail, this.activity);
    this.statusItem.text = text;
    this.statusItem.tooltip = tooltip;
    this.statusItem.backgroundColor =
      state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  private setLive(live: LiveSummary | undefined): void {
    if (live) {
      this.lastLive = live;
      this.setState(this.state, this.stateDetail);
    }
  }

  // ---- server lifecycle -----------------------------------------------------------------------
  private serialize(job: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(job, job).catch((err) => this.log.error(`${err}`));
    return this.queue;
  }

  start(): Promise<void> {
    return this.serialize(() => this.doStart());
  }

  restart(why: string): Promise<void> {
    this.log.info(`Restarting the server: ${why}.`);
    return this.serialize(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  stop(): Promise<void> {
    return this.serialize(() => this.doStop());
  }

  private async doStart(): Promise<void> {
    if (this.disposed) {
      return;
    }
    const folder = activeFolder();
    this.setState("starting");
    const resolved = await resolveInterpreter({
      setting: config(folder).get<string>("interpreter", ""),
      pythonExtension: hasPythonExtension() ? () => pythonExtensionInterpreter(folder) : undefined,
      ctx: pathContext(folder),
    });
    this.log.info(`Interpreter: ${resolved.python} (from ${resolved.source}).`);
    const probe = await probeInterpreter(resolved.python);
    if (probe.status !== "ok") {
      const msg = problemMessage(resolved, probe);
      this.log.error(msg);
      if (probe.detail) {
        this.log.error(probe.detail);
      }
      this.setState("error", msg);
      this.notifyProblem(msg);
      return;
    }
    this.log.info(`gradpath ${probe.version} in ${probe.executable}.`);

    const { command, args } = serverCommand(resolved.python);
    const serverOptions: ServerOptions = {
      command,
      args,
      transport: TransportKind.stdio,
      options: { cwd: folder?.uri.fsPath, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    };
    const initializationOptions = this.settings();
    this.log.debug(`initializationOptions ${JSON.stringify(initializationOptions)}`);
    const clientOptions: LanguageClientOptions = {
      documentSelector: DOCUMENT_SELECTOR,
      initializationOptions,
      outputChannel: this.channel,
      traceOutputChannel: this.channel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      // the live-step hover links to the gradient-flow view (command:gradpath.showGradientFlow)
      markdown: { isTrusted: { enabledCommands: ["gradpath.showGradientFlow"] } },
      connectionOptions: { maxRestartCount: 3 },
      middleware: {
        workspace: {
          // A server that pulls its settings (workspace/configuration) gets the same shape.
          configuration: async (params, token, next) => {
            const res = await next(params, token);
            if (!Array.isArray(res)) {
              return res;
            }
            return params.items.map((item, i) => (item.section === "gradpath" ? this.settings() : res[i]));
          },
        },
      },
    };
    this.runningDetail = `${resolved.python} -m gradpath serve (gradpath ${probe.version})`;
    const client = new LanguageClient("gradpath", "Gradpath", serverOptions, clientOptions);
    this.keepOwnCommands(client);
    client.onDidChangeState((e) => {
      if (this.client !== client) {
        return;
      }
      if (e.newState === State.Running) {
        this.setState("running", this.runningDetail);
      } else if (e.newState === State.Starting) {
        this.setState("starting");
      } else if (this.state !== "error") {
        this.setState("stopped");
      }
    });
    this.client = client;
    try {
      await client.start();
      client.onNotification("gradpath/status", (params: unknown) => this.onServerStatus(client, params));
      const caps = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
      caps.forEach((c) => this.serverCommands.add(c));
      this.log.info(`Server running; it offers commands: ${caps.join(", ") || "none"}.`);
      this.setState("running", this.runningDetail);
    } catch (err) {
      const msg = `Gradpath: the language server failed to start: ${err instanceof Error ? err.message : err}`;
      this.log.error(msg);
      this.setState("error", msg);
      this.client = undefined;
      try {
        await client.dispose();
      } catch {
        // already gone
      }
      this.notifyProblem(msg);
    }
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.serverCommands.clear();
    if (client) {
      try {
        await client.stop(3000);
      } catch (err) {
        this.log.warn(`Stopping the server: ${err}`);
      }
      try {
        await client.dispose();
      } catch {
        // already disposed
      }
    }
    this.setState("stopped");
  }

  /**
   * The server may offer `gradpath.confirm` / `gradpath.checkWorkspace` through executeCommand;
   * vscode-languageclient would register them as VS Code commands and clash with ours. Ours stay,
   * forwarding to the server, and the server's other commands are registered as usual.
   */
  private keepOwnCommands(client: LanguageClient): void {
    const feature = client.getFeature(ExecuteCommandRequest.method) as unknown as {
      register?: (data: { id: string; registerOptions: { commands?: string[] } }) => void;
    };
    if (!feature || typeof feature.register !== "function") {
      return;
    }
    const original = feature.register.bind(feature);
    feature.register = (data) => {
      const commands = data.registerOptions?.commands ?? [];
      commands.forEach((c) => this.serverCommands.add(c));
      original({ ...data, registerOptions: { ...data.registerOptions, commands: commands.filter((c) => !CLIENT_COMMANDS.has(c)) } });
    };
  }

  /** The server's gradpath/status: {state: ready|busy|live|disabled, message, live?: {counts}}. */
  private onServerStatus(client: LanguageClient, params: unknown): void {
    if (this.client !== client || !params || typeof params !== "object") {
      return;
    }
    const p = params as { state?: string; message?: string };
    this.log.debug(`server status ${JSON.stringify(params)}`);
    this.activity = p.state === "live" ? "live step" : undefined;
    const before = this.lastLive;
    this.lastLive = nextLive(before, params);
    if (this.lastLive && this.lastLive !== before) {
      this.flow?.onLiveStatus((params as { live?: { uri?: string } }).live?.uri);
    }
    if (p.state === "disabled") {
      this.setState("disabled", p.message || "gradpath.enable is off");
    } else if (this.state === "running" || this.state === "disabled") {
      this.setState("running", this.runningDetail);
    } else {
      this.setState(this.state, this.stateDetail);
    }
  }

  private runningDetail: string | undefined;

  private notifyProblem(msg: string): void {
    const open = "Open Setting";
    const output = "Show Output";
    vscode.window.showErrorMessage(msg, open, output).then((choice) => {
      if (choice === open) {
        openSetting("gradpath.interpreter");
      } else if (choice === output) {
        this.channel.show(true);
      }
    });
  }

  // ---- commands -------------------------------------------------------------------------------
  /** The active file: a notebook (not its cell) when a notebook editor is active. */
  private activeUri(): string | undefined {
    const editor = vscode.window.activeTextEditor;
    const nb = vscode.window.activeNotebookEditor;
    if (nb && (!editor || editor.document.uri.scheme === "vscode-notebook-cell")) {
      return nb.notebook.uri.toString();
    }
    return editor?.document.uri.toString();
  }

  private async forward(command: string, args: unknown[]): Promise<unknown> {
    const client = this.client;
    if (!client || !client.isRunning()) {
      const show = "Show Output";
      const choice = await vscode.window.showWarningMessage("Gradpath: the language server is not running.", show);
      if (choice === show) {
        this.channel.show(true);
      }
      return undefined;
    }
    if (!this.serverCommands.has(command)) {
      vscode.window.showWarningMessage(`Gradpath: this version of the server does not offer ${command}.`);
      return undefined;
    }
    const uri = this.activeUri() ?? activeFolder()?.uri.toString();
    const callArgs = args.length ? args : uri ? [uri] : [];
    this.log.debug(`executeCommand ${command} ${JSON.stringify(callArgs)}`);
    try {
      return await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: callArgs });
    } catch (err) {
      const msg = `Gradpath: ${command} failed: ${err instanceof Error ? err.message : err}`;
      this.log.error(msg);
      vscode.window.showErrorMessage(msg);
      return undefined;
    }
  }

  private async confirm(args: unknown[]): Promise<unknown> {
    if (!vscode.workspace.isTrusted) {
      const manage = "Manage Workspace Trust";
      const choice = await vscode.window.showWarningMessage(
        "Gradpath runs your code (the live CPU step) only in a trusted workspace; static analysis keeps working.",
        manage,
      );
      if (choice === manage) {
        vscode.commands.executeCommand("workbench.trust.manage");
      }
      return undefined;
    }
    const file = this.activeUri()?.split("/").pop();
    this.statusItem.text = "$(loading~spin) Gradpath: live step…";
    const result = await this.forward("gradpath.confirm", args);
    this.flow?.onLiveResult(this.activeUri(), result);
    const summary = summarizeLive(result, file);
    if (summary) {
      this.setLive(summary);
    } else {
      this.setState(this.state, this.stateDetail);
    }
    return result;
  }

  dispose(): void {
    this.disposed = true;
    this.disposables.forEach((d) => d.dispose());
  }

  async shutdown(): Promise<void> {
    await this.stop();
    this.dispose();
  }
}

let instance: Gradpath | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  instance = new Gradpath(context);
  instance.register();
  // Do not block activation on the interpreter probe and the server's start.
  void instance.start();
}

export async function deactivate(): Promise<void> {
  await instance?.shutdown();
  instance = undefined;
}
