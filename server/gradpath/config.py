"""Configuration: editor settings -> analysis Options.

This module turns the settings an editor sends (LSP `initializationOptions` or
`workspace/didChangeConfiguration`, the "gradpath" section) into `analysis.engine.Options`.
`[tool.gradpath]` in pyproject.toml / gradpath.toml is read by `gradpath.projectconfig`; the
language server applies the editor's Options on top of the project's with
`projectconfig.merge_options(project, editor)` (see lsp/scheduler.py `options_for`).

Settings understood here (all optional):
  select    list of codes/prefixes (or one comma-separated string)   default ["GP"]
  ignore    list of codes/prefixes                                    default []
  severity  {code or prefix: "error"|"warning"|"info"|"hint"|"off"}  "off" = ignore that code
"""
from __future__ import annotations

import copy
from typing import Any

from gradpath.analysis.engine import Options

SEVERITIES = ("error", "warning", "info", "hint", "off")
_SEVERITY_ALIASES = {"information": "info", "warn": "warning", "none": "off", "disabled": "off",
                     "ignore": "off"}


def _codes(value: Any) -> list[str] | None:
    """A list of code selectors from a list or a comma-separated string; None when unusable."""
    if value is None:
        return None
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, str):
                out += [c.strip() for c in v.split(",") if c.strip()]
        return out
    return None


def _known_selector(sel: str) -> bool:
    from gradpath.analysis import catalog
    up = sel.upper()
    return up == "ALL" or any(code.startswith(up) for code in catalog.RULES) \
        or any(r.slug == sel for r in catalog.RULES.values())


def _check(key: str, sels: list[str] | None, problems: list[str]) -> None:
    for sel in sels or []:
        if not _known_selector(sel):
            problems.append(f"gradpath.{key}: unknown rule selector {sel!r} (expected a code like GP102, "
                            "a prefix like GP1, or a slug like partial-params)")


def options_from_settings(settings: dict | None, base: Options | None = None,
                          problems: list[str] | None = None) -> Options:
    """Analysis Options from editor settings (the contents of the "gradpath" section).

    `base` (e.g. from pyproject.toml) is copied and overridden by what the settings set. Invalid
    values are skipped and described in `problems` (when given); they never raise.
    """
    opts = copy.deepcopy(base) if base is not None else Options()
    settings = settings if isinstance(settings, dict) else {}
    problems = problems if problems is not None else []

    sel = _codes(settings.get("select"))
    if settings.get("select") is not None and sel is None:
        problems.append("gradpath.select: expected a list of codes or prefixes (GP1, GP102)")
    _check("select", sel, problems)
    _check("ignore", ign := _codes(settings.get("ignore")), problems)
    if sel:  # an empty list means "default", not "nothing"
        opts.select = sel
    if settings.get("ignore") is not None and ign is None:
        problems.append("gradpath.ignore: expected a list of codes or prefixes")
    if ign is not None:
        opts.ignore = list(dict.fromkeys(list(opts.ignore) + ign))

    sev = settings.get("severity")
    if sev is not None and not isinstance(sev, dict):
        problems.append("gradpath.severity: expected an object {code or prefix: severity}")
        sev = None
    for key, value in (sev or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(f"gradpath.severity: ignoring {key!r}: {value!r}")
            continue
        v = _SEVERITY_ALIASES.get(value.strip().lower(), value.strip().lower())
        if v not in SEVERITIES:
            problems.append(f"gradpath.severity.{key}: {value!r} is not one of {', '.join(SEVERITIES)}")
            continue
        code = key.strip().upper()
        if v == "off":
            if code not in opts.ignore:
                opts.ignore.append(code)
        else:
            opts.severity[code] = v
    return opts
