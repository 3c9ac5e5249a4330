// What the status bar item says. Pure: no `vscode` import.

export type ServerState = "starting" | "running" | "stopped" | "error" | "disabled";

export interface LiveSummary {
  confirmed: number;
  notReproduced: number;
  notRun: number;
  /** The file it ran on, for the tooltip. */
  file?: string;
  /** The document's uri, when the server said: an update or a reset applies to that document only. */
  uri?: string;
  /** Why a single not-run happened, when the server said. */
  reason?: string;
  /** The file changed since the step ran. */
  stale?: boolean;
}

const ICONS: Record<ServerState, string> = {
  starting: "$(loading~spin)",
  running: "$(check)",
  stopped: "$(circle-slash)",
  error: "$(error)",
  disabled: "$(circle-slash)",
};

export function liveText(live: LiveSummary): string {
  const parts: string[] = [];
  if (live.confirmed) {
    parts.push(`${live.confirmed} confirmed`);
  }
  if (live.notReproduced) {
    parts.push(`${live.notReproduced} not reproduced`);
  }
  if (live.notRun) {
    parts.push(`${live.notRun} not run`);
  }
  const text = parts.length ? parts.join(", ") : "nothing to confirm";
  return live.stale ? `${text} (outdated)` : text;
}

/** `activity`: what a running server is doing now ("analysing", "live step"), from its status. */
export function statusBar(
  state: ServerState,
  live?: LiveSummary,
  detail?: string,
  activity?: string,
): { text: string; tooltip: string } {
  let text = `${activity && state === "running" ? "$(loading~spin)" : ICONS[state]} Gradpath`;
  if (state !== "running") {
    text += `: ${state}`;
  } else if (activity) {
    text += `: ${activity}`;
  }
  const tips = [`Gradpath language server: ${state}`];
  if (detail) {
    tips.push(detail);
  }
  if (live) {
    text += ` · live: ${liveText(live)}`;
    tips.push(`Last live CPU step${live.file ? ` (${live.file})` : ""}: ${liveText(live)}${live.reason ? ` (${live.reason})` : ""}`);
  }
  tips.push("Click to show the Gradpath output.");
  return { text, tooltip: tips.join("\n") };
}

function verdictOf(item: unknown): { verdict: string; reason?: string } | undefined {
  if (!item || typeof item !== "object") {
    return undefined;
  }
  const o = item as Record<string, unknown>;
  if (typeof o.verdict === "string") {
    return { verdict: o.verdict, reason: typeof o.reason === "string" ? o.reason : undefined };
  }
  if (o.live && typeof o.live === "object") {
    return verdictOf(o.live);
  }
  return undefined;
}

/**
 * Counts verdicts in whatever the server returned for a live step: a list of findings or verdicts
 * (`[{verdict}]`, `[{live: {verdict}}]`), or an object holding one (`{verdicts: {id: {verdict}}}`,
 * `{findings: [...]}`, `{results: [...]}`). Undefined when there is no verdict in it at all.
 */
export function summarizeLive(result: unknown, file?: string): LiveSummary | undefined {
  const items: unknown[] = [];
  const collect = (v: unknown) => {
    if (Array.isArray(v)) {
      items.push(...v);
    } else if (v && typeof v === "object") {
      items.push(...Object.values(v as Record<string, unknown>));
    }
  };
  if (Array.isArray(result)) {
    collect(result);
  } else if (result && typeof result === "object") {
    const o = result as Record<string, unknown>;
    for (const key of ["verdicts", "findings", "results", "items"]) {
      if (key in o) {
        collect(o[key]);
      }
    }
    if (!items.length && verdictOf(o)) {
      items.push(o);
    }
    if (!file && typeof o.uri === "string") {
      file = o.uri.split("/").pop();
    }
  }
  const counted = countsOf(result);
  if (counted) {
    return { ...counted, file: counted.file ?? file };
  }
  const uri = result && typeof result === "object" && typeof (result as { uri?: unknown }).uri === "string"
    ? ((result as { uri: string }).uri)
    : undefined;
  const verdicts = items.map(verdictOf).filter((v): v is { verdict: string; reason?: string } => !!v);
  if (!verdicts.length) {
    return undefined;
  }
  const s: LiveSummary = { confirmed: 0, notReproduced: 0, notRun: 0, file, ...(uri ? { uri } : {}) };
  for (const v of verdicts) {
    const k = v.verdict.toLowerCase().replace(/[_ ]/g, "-");
    if (k === "confirmed") {
      s.confirmed++;
    } else if (k === "not-reproduced") {
      s.notReproduced++;
    } else {
      s.notRun++;
      s.reason = s.reason ?? v.reason;
    }
  }
  return s;
}

function countsOf(v: unknown): LiveSummary | undefined {
  // The server's gradpath/status notification: {live: {uri, confirmed, "not-reproduced", "not-run"}}.
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    return undefined;
  }
  const o = v as Record<string, unknown>;
  if (o.live && typeof o.live === "object" && !("verdict" in (o.live as object))) {
    return countsOf(o.live);
  }
  const n = (k: string) => (typeof o[k] === "number" ? (o[k] as number) : undefined);
  const confirmed = n("confirmed");
  const notReproduced = n("not-reproduced") ?? n("notReproduced");
  const notRun = n("not-run") ?? n("notRun");
  if (confirmed === undefined && notReproduced === undefined && notRun === undefined) {
    return undefined;
  }
  return {
    confirmed: confirmed ?? 0,
    notReproduced: notReproduced ?? 0,
    notRun: notRun ?? 0,
    file: typeof o.uri === "string" ? decodeURIComponent(o.uri.split("/").pop() ?? "") : undefined,
    ...(typeof o.uri === "string" ? { uri: o.uri } : {}),
    ...(o.stale === true ? { stale: true } : {}),
  };
}

/**
 * What a gradpath/status notification does to the live part of the status bar, given what it shows
 * now (`current`). The server sends `live: {uri, counts..., update: true}` when the verdicts that
 * apply to a document changed (a quick fix removed a confirmed finding) and `live: {uri, cleared:
 * true, update: true}` when none applies any more (the file changed since the step ran): those
 * apply only to the document the status bar is about. Any other live summary (a live step that
 * just ran) replaces it. Returns the new summary (undefined: no live part).
 */
export function nextLive(current: LiveSummary | undefined, params: unknown): LiveSummary | undefined {
  const live = params && typeof params === "object" ? (params as { live?: unknown }).live : undefined;
  const o = live && typeof live === "object" ? (live as Record<string, unknown>) : undefined;
  if (o && o.update === true) {
    if (!current || (current.uri !== undefined && current.uri !== o.uri)) {
      return current;
    }
    if (o.cleared === true) {
      return undefined;
    }
  }
  return summarizeLive(params) ?? current;
}
