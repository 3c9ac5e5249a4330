// The "Gradient flow" view: a webview panel beside the editor that shows what the last live CPU step
// did to every parameter tensor. The data comes once per view from the server's gradpath/gradientFlow
// request; the webview script (src/webview/flowView.ts, bundled as dist/flowView.js) draws it under a
// strict Content-Security-Policy (no network, one nonce'd script and style). Opened by the command
// gradpath.showGradientFlow, which the code lens, the hover link and this module's status bar item
// run. Clicking a row reveals the line where that layer was built.
import * as vscode from "vscode";
import { contentSecurityPolicy, FlowAnswer, flowBrief, makeNonce } from "./flowModel";

export const SHOW_FLOW_COMMAND = "gradpath.showGradientFlow";
const FLOW_REQUEST = "gradpath/gradientFlow";

export interface FlowClient {
  sendRequest(method: string, params: unknown): Promise<unknown>;
}

const STYLE = `
:root { --gp-subject: color-mix(in srgb, var(--vscode-editorError-foreground, #f14c4c) 11%, transparent); }
body.vscode-high-contrast, body.vscode-high-contrast-light { --gp-subject: transparent; }
body.vscode-high-contrast tr.subject td, body.vscode-high-contrast-light tr.subject td {
  border-top: 1px dashed var(--vscode-contrastBorder); border-bottom: 1px dashed var(--vscode-contrastBorder); }
body { padding: 0 16px 16px; color: var(--vscode-foreground); font-family: var(--vscode-font-family);
  font-size: var(--vscode-font-size); background: var(--vscode-editor-background); }
h1.title { font-size: 1.25em; margin: 12px 0 4px; }
.summary { font-weight: 600; margin: 4px 0; }
.muted { color: var(--vscode-descriptionForeground); }
.meta { margin: 2px 0 6px; }
ul.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; list-style: none; padding: 0; margin: 6px 0 10px; }
ul.legend li { display: flex; align-items: center; }
.flag { display: inline-block; padding: 0 6px; margin-right: 4px; border-radius: 3px; font-size: 0.85em;
  font-weight: 600; color: var(--vscode-editor-background); white-space: nowrap; line-height: 1.5; }
.subject-swatch { display: inline-block; padding: 0 6px; line-height: 1.5; font-size: 0.85em; background: var(--gp-subject);
  border-left: 3px solid var(--vscode-editorError-foreground, var(--vscode-errorForeground)); }
table.flow { border-collapse: collapse; width: 100%; font-family: var(--vscode-editor-font-family);
  font-size: var(--vscode-editor-font-size); }
table.flow th { text-align: left; font-weight: 600; color: var(--vscode-descriptionForeground);
  border-bottom: 1px solid var(--vscode-panel-border, var(--vscode-widget-border, transparent)); padding: 3px 6px; }
table.flow td { padding: 1px 6px; white-space: nowrap; vertical-align: middle; }
table.flow th.update, table.flow th.grad { white-space: normal; }
table.flow td.flags { white-space: normal; min-width: 19em; max-width: 26em; line-height: 1.7; }
tr.group td { font-weight: 700; padding-top: 4px; }
tr.group .muted { font-weight: 400; }
tr[tabindex] { cursor: pointer; }
tr[tabindex]:hover { background: var(--vscode-list-hoverBackground); }
tr[tabindex]:focus { outline: 1px solid var(--vscode-focusBorder); outline-offset: -1px;
  background: var(--vscode-list-focusBackground, var(--vscode-list-hoverBackground)); }
tr.subject td { background: var(--gp-subject); }
tr.subject td:first-child { box-shadow: inset 3px 0 0 var(--vscode-editorError-foreground, var(--vscode-errorForeground)); }
td.bar-cell .track { display: inline-block; vertical-align: middle; width: clamp(48px, 11vw, 140px); height: 9px; margin-right: 6px;
  background: var(--vscode-editorWidget-background, var(--vscode-input-background)); }
td.bar-cell .fill { height: 100%; }
td.grad .fill { background: var(--vscode-charts-blue, var(--vscode-textLink-foreground)); }
td.update .fill { background: var(--vscode-charts-green, var(--vscode-testing-iconPassed)); }
a.finding-link { margin-left: 4px; font-weight: 700; color: var(--vscode-textLink-foreground); }
a.finding-link:focus { outline: 1px solid var(--vscode-focusBorder); }
button.run { color: var(--vscode-button-foreground); background: var(--vscode-button-background);
  border: 1px solid var(--vscode-button-border, transparent); padding: 4px 12px; cursor: pointer; }
body.vscode-high-contrast .flag, body.vscode-high-contrast-light .flag { outline: 1px solid var(--vscode-contrastBorder); }
body.vscode-high-contrast td.bar-cell .track, body.vscode-high-contrast-light td.bar-cell .track {
  outline: 1px solid var(--vscode-contrastBorder); }
`;

export class GradientFlow implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private ready = false;
  private pending: FlowAnswer | undefined;
  private uri: string | undefined;
  private answer: FlowAnswer | undefined;
  private readonly item: vscode.StatusBarItem;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly client: () => FlowClient | undefined,
    private readonly log: (msg: string) => void,
  ) {
    this.item = vscode.window.createStatusBarItem("gradpath.gradientFlow", vscode.StatusBarAlignment.Right, 99);
    this.item.name = "Gradpath: gradient flow";
    this.item.command = SHOW_FLOW_COMMAND;
    this.disposables.push(
      this.item,
      vscode.commands.registerCommand(SHOW_FLOW_COMMAND, (arg?: unknown) => this.show(uriArg(arg))),
      vscode.window.onDidChangeActiveTextEditor(() => this.syncItem()),
    );
  }

  /** After a gradpath.confirm that this extension forwarded: its result carries the brief. */
  onLiveResult(uri: string | undefined, result: unknown): void {
    const brief = flowBrief(result);
    const resUri = result && typeof result === "object" ? (result as { uri?: unknown }).uri : undefined;
    const target = typeof resUri === "string" ? resUri : uri;
    if (!target) {
      return;
    }
    this.briefs.set(target, brief ? `${brief.updated} of ${brief.tensors} updated` : undefined);
    this.syncItem();
    if (this.panel && (this.uri === target || !this.uri)) {
      void this.load(target);
    }
  }

  /** A live step the server ran on its own (live.onSave): gradpath/status names the document. */
  onLiveStatus(uri: string | undefined): void {
    if (!uri) {
      return;
    }
    this.briefs.set(uri, "updated");
    this.syncItem();
    if (this.panel && this.uri === uri) {
      void this.load(uri);
    }
  }

  private briefs = new Map<string, string | undefined>();

  private syncItem(): void {
    const uri = vscode.window.activeTextEditor?.document.uri.toString();
    const brief = uri ? this.briefs.get(uri) : undefined;
    if (uri && brief) {
      this.item.text = "$(graph) Gradient flow";
      this.item.tooltip = `Gradpath: show what the last live CPU step did to every parameter tensor (${brief})`;
      this.item.show();
    } else {
      this.item.hide();
    }
  }

  async show(uri?: string): Promise<void> {
    const target = uri ?? vscode.window.activeTextEditor?.document.uri.toString() ?? this.uri;
    if (!target) {
      vscode.window.showInformationMessage("Gradpath: open a Python file and run a live CPU step first.");
      return;
    }
    this.ensurePanel();
    await this.load(target);
  }

  private ensurePanel(): void {
    if (this.panel) {
      this.panel.reveal(vscode.ViewColumn.Beside, true);
      return;
    }
    const media = vscode.Uri.joinPath(this.context.extensionUri, "dist");
    const panel = vscode.window.createWebviewPanel(
      "gradpath.gradientFlow",
      "Gradient flow",
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
      { enableScripts: true, localResourceRoots: [media], retainContextWhenHidden: false },
    );
    this.panel = panel;
    this.ready = false;
    const nonce = makeNonce();
    const script = panel.webview.asWebviewUri(vscode.Uri.joinPath(media, "flowView.js"));
    panel.webview.html = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(panel.webview.cspSource, nonce)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gradient flow</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<main id="root" aria-live="polite"><p class="muted">Loading the gradient flow…</p></main>
<script nonce="${nonce}" src="${script}"></script>
</body>
</html>`;
    panel.webview.onDidReceiveMessage((m) => this.onMessage(m), undefined, this.disposables);
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.ready = false;
    });
  }

  private async load(uri: string): Promise<void> {
    this.uri = uri;
    const client = this.client();
    let answer: FlowAnswer;
    if (!client) {
      answer = { uri, available: false, reason: "the Gradpath language server is not running" };
    } else {
      try {
        answer = ((await client.sendRequest(FLOW_REQUEST, { uri })) as FlowAnswer) ?? {
          uri,
          available: false,
          reason: "the server had nothing to say",
        };
      } catch (err) {
        answer = { uri, available: false, reason: `the server could not answer: ${err instanceof Error ? err.message : err}` };
      }
    }
    this.answer = answer;
    if (this.panel) {
      const name = decodeURIComponent(uri.split("/").pop() ?? "");
      this.panel.title = `Gradient flow: ${name}`;
    }
    this.post(answer);
  }

  private post(answer: FlowAnswer): void {
    if (!this.panel) {
      return;
    }
    if (!this.ready) {
      this.pending = answer;
      return;
    }
    void this.panel.webview.postMessage({ type: "view", answer });
  }

  private async onMessage(m: unknown): Promise<void> {
    if (!m || typeof m !== "object") {
      return;
    }
    const msg = m as { type?: string; uri?: string; line?: number; id?: string };
    if (msg.type === "ready") {
      this.ready = true;
      const a = this.pending ?? this.answer;
      this.pending = undefined;
      if (a) {
        this.post(a);
      }
    } else if (msg.type === "reveal" && typeof msg.uri === "string" && typeof msg.line === "number") {
      await this.reveal(msg.uri, new vscode.Range(msg.line, 0, msg.line, 0));
    } else if (msg.type === "finding" && typeof msg.id === "string") {
      const f = this.answer?.view?.findings.find((x) => x.id === msg.id);
      if (f?.uri && f.range) {
        const r = f.range;
        await this.reveal(f.uri, new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character));
      }
    } else if (msg.type === "runStep") {
      const uri = msg.uri ?? this.uri;
      if (uri) {
        await this.reveal(uri, undefined);
      }
      await vscode.commands.executeCommand("gradpath.confirm", ...(uri ? [uri] : []));
    }
  }

  /** Shows the document in the editor column (not the panel's) with the range selected. */
  private async reveal(uri: string, range: vscode.Range | undefined): Promise<void> {
    const target = vscode.Uri.parse(uri);
    const open = vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === target.toString());
    const column = open?.viewColumn ?? vscode.ViewColumn.One;
    try {
      const doc = await vscode.workspace.openTextDocument(target);
      const editor = await vscode.window.showTextDocument(doc, { viewColumn: column, preserveFocus: false, selection: range });
      if (range) {
        editor.revealRange(range, vscode.TextEditorRevealType.InCenterIfOutsideViewport);
      }
    } catch (err) {
      this.log(`Gradient flow: cannot open ${uri}: ${err}`);
    }
  }

  dispose(): void {
    this.panel?.dispose();
    this.disposables.forEach((d) => d.dispose());
  }
}

function uriArg(arg: unknown): string | undefined {
  if (typeof arg === "string") {
    return arg;
  }
  if (arg instanceof vscode.Uri) {
    return arg.toString();
  }
  if (arg && typeof arg === "object" && typeof (arg as { uri?: unknown }).uri === "string") {
    return (arg as { uri: string }).uri;
  }
  return undefined;
}
