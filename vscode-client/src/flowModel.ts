// The gradient-flow view's data, as the server's gradpath/gradientFlow request answers it
// (server/gradpath/lsp/flow.py over gradpath/live/report/view.py), and the small pure helpers the
// webview script and the extension share. No `vscode` and no DOM here: node's test runner loads it.

export type Flag = "no-optimizer" | "frozen" | "no-grad" | "zero-grad" | "nonfinite" | "unchanged" | "unregistered";

export interface FlowLocation {
  uri: string;
  /** 0-based line in that document. */
  line: number;
}

export interface FlowRow {
  index: number;
  name: string;
  qualname: string;
  owner: string;
  owner_class?: string | null;
  line?: number | null;
  shape?: number[];
  requires_grad: boolean;
  registered: boolean;
  grad: number | string | null;
  grad_text: string;
  grad_frac: number | null;
  update: number | string | null;
  update_text: string;
  update_frac: number | null;
  changed: boolean | null;
  optimizers: string[];
  flags: Flag[];
  findings: string[];
  location?: FlowLocation | null;
}

export interface FlowGroup {
  type: "group";
  path: string;
  label: string;
  depth: number;
  class?: string | null;
  line?: number | null;
  location?: FlowLocation | null;
}

export type FlowItem = FlowGroup | { type: "row"; index: number; depth: number };

export interface FlowFinding {
  id: string;
  code: string;
  message: string;
  line: number;
  verdict?: string | null;
  uri?: string;
  range?: { start: { line: number; character: number }; end: { line: number; character: number } };
}

export interface FlowView {
  title: string;
  summary: string;
  steps: number;
  backward: number;
  mode?: string | null;
  truncated: boolean;
  rows: FlowRow[];
  items: FlowItem[];
  findings: FlowFinding[];
  legend: { flag: Flag; text: string; count: number }[];
  scales: { grad: { frac: number; label: string }[]; update: { frac: number; label: string }[] };
  optimizers: { label: string; class: string; line?: number | null; tensors?: number }[];
  /** Modules built but not used by the step (no tensor in an optimizer, none got a gradient). */
  unused_roots?: { class: string; line?: number | null; var?: string | null; tensors: number }[];
  updated: number;
  total: number;
}

export interface FlowAnswer {
  uri: string;
  available: boolean;
  reason?: string;
  view?: FlowView;
}

/** Short text of each flag on a row's chip. */
export const FLAG_SHORT: Record<Flag, string> = {
  "no-optimizer": "no optimizer",
  frozen: "frozen",
  "no-grad": "grad None",
  "zero-grad": "grad 0",
  nonfinite: "non-finite",
  unchanged: "unchanged",
  unregistered: "unregistered",
};

/** Each flag's colour: a theme colour, so light, dark and high-contrast themes each get theirs. */
export const FLAG_COLOUR: Record<Flag, string> = {
  "no-optimizer": "var(--vscode-charts-red, var(--vscode-errorForeground))",
  frozen: "var(--vscode-disabledForeground, var(--vscode-descriptionForeground))",
  "no-grad": "var(--vscode-charts-orange, var(--vscode-editorWarning-foreground))",
  "zero-grad": "var(--vscode-charts-yellow, var(--vscode-editorWarning-foreground))",
  nonfinite: "var(--vscode-editorError-foreground, var(--vscode-errorForeground))",
  unchanged: "var(--vscode-charts-purple, var(--vscode-textLink-foreground))",
  unregistered: "var(--vscode-charts-blue, var(--vscode-textLink-foreground))",
};

/** A bar's width in percent of its track (0 when there is nothing to draw). */
export function barPercent(frac: number | null | undefined): number {
  if (frac === null || frac === undefined || !Number.isFinite(frac) || frac <= 0) {
    return 0;
  }
  return Math.round(Math.min(1, frac) * 1000) / 10;
}

export function shapeText(shape: number[] | undefined): string {
  if (!Array.isArray(shape)) {
    return "";
  }
  return `(${shape.join(", ")}${shape.length === 1 ? "," : ""})`;
}

/** The leaf shown on a tensor's row under its module's group (`weight`), or the whole name. */
export function leafName(row: FlowRow): string {
  if (!row.owner) {
    return row.name;
  }
  const i = row.name.lastIndexOf(".");
  return i >= 0 ? row.name.slice(i + 1) : row.name;
}

/** What a screen reader says for a row (and its tooltip). */
export function rowLabel(row: FlowRow): string {
  const parts = [
    row.qualname,
    `gradient norm ${row.grad_text}`,
    `relative update ${row.update_text}`,
    row.optimizers.length ? `in ${row.optimizers.join(", ")}` : "in no optimizer",
  ];
  if (row.flags.length) {
    parts.push(`flags: ${row.flags.map((f) => FLAG_SHORT[f]).join(", ")}`);
  }
  if (row.findings.length) {
    parts.push(`subject of ${row.findings.map((f) => f.split(":")[0]).join(", ")}`);
  }
  if (row.line) {
    parts.push(`defined at line ${row.line}`);
  }
  return parts.join("; ");
}

/** The findings (with code) that a row is the subject of, in the view's order. */
export function rowFindings(view: FlowView, row: FlowRow): FlowFinding[] {
  return view.findings.filter((f) => row.findings.includes(f.id));
}

/** The brief a gradpath.confirm result carries ({available, summary, tensors, updated}), if any. */
export function flowBrief(result: unknown): { summary: string; tensors: number; updated: number } | undefined {
  if (!result || typeof result !== "object") {
    return undefined;
  }
  const b = (result as Record<string, unknown>).gradientFlow as Record<string, unknown> | undefined;
  if (!b || b.available !== true || typeof b.summary !== "string") {
    return undefined;
  }
  return { summary: b.summary, tensors: Number(b.tensors) || 0, updated: Number(b.updated) || 0 };
}

/** A random nonce for the webview's Content-Security-Policy. */
export function makeNonce(random: () => number = Math.random): string {
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let out = "";
  for (let i = 0; i < 32; i++) {
    out += chars.charAt(Math.floor(random() * chars.length));
  }
  return out;
}

/** The webview's Content-Security-Policy: nothing but our nonce'd script and style, no network. */
export function contentSecurityPolicy(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${cspSource} 'nonce-${nonce}'`,
    `img-src ${cspSource} data:`,
    `font-src ${cspSource}`,
  ].join("; ");
}
