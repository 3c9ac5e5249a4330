"""The language server's settings, from initializationOptions or workspace/didChangeConfiguration.

Keys (the "gradpath" section; nested objects or dotted keys both work):
  enable               bool, default true: false clears every diagnostic and stops analysing
  select, ignore, severity   see gradpath.config.options_from_settings
  debounceMs           int, default 0: wait this long after the last keystroke before analysing (0: at once;
                       an edit that arrives meanwhile supersedes the running analysis's result)
  trusted              bool, default true: false = never execute user code (gradpath.confirm refuses)
  live.onSave          bool, default false: run the live CPU step after each save (trusted only)
  live.timeoutSeconds  float, default 20
  live.python          interpreter for the live worker (default: the one running the server)
  live.memoryMb        int, default 2048
  logLevel             "error"|"warning"|"info"|"debug", default "info" (window/logMessage level)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradpath.analysis.engine import Options
from gradpath.config import options_from_settings

DEFAULT_DEBOUNCE_MS = 0


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("severity",):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def extract_section(raw: Any) -> dict:
    """The gradpath settings from what a client sends: `{"gradpath": {...}}`, `{"settings": {...}}`
    (Ruff-style initializationOptions) or the section itself."""
    if not isinstance(raw, dict):
        return {}
    for k in ("gradpath", "settings"):
        if isinstance(raw.get(k), dict):
            inner = raw[k]
            return extract_section(inner) if "gradpath" in inner else inner
    return raw


def _bool(v: Any, default: bool) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return default


def _num(v: Any, default: float, lo: float, hi: float) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return default
    if x != x:  # NaN
        return default
    return max(lo, min(hi, x))


@dataclass
class EditorSettings:
    enable: bool = True
    options: Options = field(default_factory=Options)
    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    trusted: bool = True
    live_on_save: bool = False
    live_timeout_s: float = 20.0
    live_python: str | None = None
    live_memory_mb: int = 2048
    log_level: str = "info"
    problems: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def live_allowed(self) -> bool:
        return self.enable and self.trusted

    @classmethod
    def parse(cls, raw: Any, base: "EditorSettings | None" = None) -> "EditorSettings":
        """Settings from a client payload; keys not given keep `base`'s values (or defaults)."""
        section = extract_section(raw)
        merged = dict(base.raw) if base is not None else {}
        merged.update(_flatten(section))
        s = cls(raw=merged)
        s.enable = _bool(merged.get("enable"), True)
        nested = {k: merged[k] for k in ("select", "ignore", "severity") if k in merged}
        s.options = options_from_settings(nested, problems=s.problems)
        s.debounce_ms = int(_num(merged.get("debounceMs"), DEFAULT_DEBOUNCE_MS, 0, 5000))
        s.trusted = _bool(merged.get("trusted"), True)
        s.live_on_save = _bool(merged.get("live.onSave"), False)
        s.live_timeout_s = _num(merged.get("live.timeoutSeconds"), 20.0, 1.0, 600.0)
        py = merged.get("live.python")
        s.live_python = py if isinstance(py, str) and py.strip() else None
        s.live_memory_mb = int(_num(merged.get("live.memoryMb"), 2048, 64, 1 << 20))
        lvl = merged.get("logLevel", merged.get("trace.server"))
        if isinstance(lvl, str) and lvl.lower() in ("error", "warning", "info", "debug", "verbose",
                                                      "messages", "off"):
            s.log_level = {"verbose": "debug", "messages": "info", "off": "warning"}.get(lvl.lower(), lvl.lower())
        return s
