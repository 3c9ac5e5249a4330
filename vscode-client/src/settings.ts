// Shapes the user's `gradpath.*` settings into the server's initialization options (and the
// `workspace/didChangeConfiguration` payload). Pure: no `vscode` import, so node's test runner can
// check it without VS Code.

/** Reads one setting below `gradpath.` ("live.onSave"), with a default. */
export interface ConfigReader {
  get<T>(key: string, defaultValue: T): T;
}

export type Level = "error" | "warning" | "info" | "hint" | "off";

/** Exactly the keys the language server reads from its initialization options. */
export interface ServerSettings {
  enable: boolean;
  select: string[];
  ignore: string[];
  severity: Record<string, Level>;
  live: { onSave: boolean; timeoutSeconds: number; python: string | null };
  trusted: boolean;
  debounceMs: number;
  /** The server's window/logMessage level, from `gradpath.trace.server`. */
  logLevel: "info" | "debug";
}

export interface PathContext {
  workspaceFolder?: string;
  home?: string;
}

const LEVELS: Record<string, Level> = {
  error: "error",
  warning: "warning",
  warn: "warning",
  info: "info",
  information: "info",
  hint: "hint",
  off: "off",
  none: "off",
  ignore: "off",
};

/** `~` and `${workspaceFolder}` / `${userHome}` expanded; blank -> undefined. */
export function expandPath(value: string | undefined | null, ctx: PathContext): string | undefined {
  if (typeof value !== "string") {
    return undefined;
  }
  let out = value.trim();
  if (!out) {
    return undefined;
  }
  if (ctx.home) {
    if (out === "~") {
      out = ctx.home;
    } else if (out.startsWith("~/")) {
      out = ctx.home + out.slice(1);
    }
    out = out.split("${userHome}").join(ctx.home);
  }
  if (ctx.workspaceFolder) {
    out = out.split("${workspaceFolder}").join(ctx.workspaceFolder);
  }
  return out;
}

/** ["gp1", " GP102 ", "", 3] -> ["GP1", "GP102"]: codes upper-cased, junk dropped, order kept. */
export function normalizeCodes(value: unknown): string[] {
  if (!Array.isArray(value)) {
    return typeof value === "string" ? normalizeCodes(value.split(",")) : [];
  }
  const out: string[] = [];
  for (const item of value) {
    if (typeof item !== "string") {
      continue;
    }
    const code = item.trim();
    if (!code) {
      continue;
    }
    const norm = /^gp\d*$/i.test(code) || code.toUpperCase() === "ALL" ? code.toUpperCase() : code;
    if (!out.includes(norm)) {
      out.push(norm);
    }
  }
  return out;
}

/** {"gp401": "Error", "GP3": "information", "GP1": "bogus"} -> {"GP401": "error", "GP3": "info"} */
export function normalizeSeverity(value: unknown): Record<string, Level> {
  const out: Record<string, Level> = {};
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return out;
  }
  for (const [key, raw] of Object.entries(value as Record<string, unknown>)) {
    if (typeof raw !== "string") {
      continue;
    }
    const level = LEVELS[raw.trim().toLowerCase()];
    const code = key.trim();
    if (level && code) {
      out[/^gp\d*$/i.test(code) ? code.toUpperCase() : code] = level;
    }
  }
  return out;
}

function clampNumber(value: unknown, dflt: number, min: number, max: number): number {
  const n = typeof value === "number" ? value : typeof value === "string" ? Number(value) : NaN;
  if (!Number.isFinite(n)) {
    return dflt;
  }
  return Math.min(max, Math.max(min, n));
}

/**
 * The server's settings from the user's. In an untrusted workspace nothing may run the user's
 * code: `trusted` is false and `live.onSave` is forced off (the server enforces it too).
 */
export function shapeSettings(cfg: ConfigReader, trusted: boolean, ctx: PathContext = {}): ServerSettings {
  const livePython = trusted ? expandPath(cfg.get<string>("live.python", ""), ctx) : undefined;
  return {
    enable: cfg.get<boolean>("enable", true) !== false,
    select: normalizeCodes(cfg.get<unknown>("select", [])),
    ignore: normalizeCodes(cfg.get<unknown>("ignore", [])),
    severity: normalizeSeverity(cfg.get<unknown>("severity", {})),
    live: {
      onSave: trusted && cfg.get<boolean>("live.onSave", false) === true,
      timeoutSeconds: clampNumber(cfg.get<unknown>("live.timeoutSeconds", 20), 20, 1, 600),
      python: livePython ?? null,
    },
    trusted,
    debounceMs: Math.round(clampNumber(cfg.get<unknown>("debounceMs", 0), 0, 0, 5000)),
    logLevel: cfg.get<string>("trace.server", "off") === "verbose" ? "debug" : "info",
  };
}

/** Settings whose change needs a server restart rather than a didChangeConfiguration. */
export const RESTART_KEYS = ["interpreter"];

/** A plain-object ConfigReader: keys nested ({live: {onSave}}) or flat ({"live.onSave": ...}). */
export function readerFromObject(obj: Record<string, unknown>): ConfigReader {
  return {
    get<T>(key: string, dflt: T): T {
      if (Object.prototype.hasOwnProperty.call(obj, key)) {
        const v = obj[key];
        return v === undefined ? dflt : (v as T);
      }
      let cur: unknown = obj;
      for (const part of key.split(".")) {
        if (!cur || typeof cur !== "object" || !Object.prototype.hasOwnProperty.call(cur, part)) {
          return dflt;
        }
        cur = (cur as Record<string, unknown>)[part];
      }
      return cur === undefined ? dflt : (cur as T);
    },
  };
}
