"""Project configuration: `[tool.gradpath]` in `pyproject.toml`, or a `gradpath.toml`.

Found by walking up from the analysed file: in each folder a `gradpath.toml` wins over a
`pyproject.toml`; a `pyproject.toml` without a `[tool.gradpath]` table is passed over. Keys:

    [tool.gradpath]
    select = ["GP1", "GP2"]             # codes, prefixes or slugs; default: every rule
    ignore = ["GP308"]
    exclude = ["build/", "legacy/**/*.py"]   # globs, relative to the config file's folder
    [tool.gradpath.severity]            # per code or prefix; the longest match wins
    GP4 = "error"
    GP307 = "warning"
    [tool.gradpath.per-file-ignores]
    "tests/**" = ["GP1"]
    [tool.gradpath.live]
    timeout-seconds = 30
    memory-mb = 2048

A `gradpath.toml` holds the same keys at its top level. A bad key or value never stops the run:
it becomes a warning naming the file, the key and what is allowed, and everything else applies.

Editor settings override the project's: `merge_options(project, editor)`.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

from gradpath.analysis import catalog
from gradpath.analysis.engine import Options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]

CONFIG_FILES = ("gradpath.toml", "pyproject.toml")
TOP_KEYS = ("select", "ignore", "severity", "exclude", "per-file-ignores", "live")
LIVE_KEYS = ("timeout-seconds", "memory-mb")
SEVERITIES = ("error", "warning", "info")
SELECTOR_HELP = 'rule codes, prefixes or slugs such as "GP102", "GP1" or "partial-params"'


@dataclass
class LiveLimits:
    timeout_seconds: float | None = None
    memory_mb: int | None = None


@dataclass
class ProjectConfig:
    path: Path | None = None  # the config file, None when none was found
    select: list[str] | None = None  # None: every rule
    ignore: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=list)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    live: LiveLimits = field(default_factory=LiveLimits)

    @property
    def root(self) -> Path | None:
        """The folder that globs are relative to."""
        return self.path.parent if self.path is not None else None

    def relative(self, file_path) -> str | None:
        """`file_path` relative to the config's folder, POSIX style; None when outside it."""
        p = Path(os.path.abspath(file_path))
        root = self.root
        if root is None:
            return p.name
        try:
            return PurePosixPath(p.relative_to(Path(os.path.abspath(root)))).as_posix()
        except ValueError:
            return None

    def is_excluded(self, file_path) -> bool:
        rel = self.relative(file_path)
        if rel is None:
            return False
        return any(glob_match(rel, pat) for pat in self.exclude)

    def ignores_for(self, file_path) -> list[str]:
        rel = self.relative(file_path)
        out = list(self.ignore)
        if rel is not None:
            for pat, codes in self.per_file_ignores.items():
                if glob_match(rel, pat):
                    out.extend(codes)
        return out

    def options_for(self, file_path) -> Options:
        """Analysis options for one file under this configuration."""
        opts = Options()
        if self.select is not None:
            opts.select = list(self.select)
        opts.ignore = self.ignores_for(file_path)
        opts.severity = dict(self.severity)
        return opts


# -- globs ---------------------------------------------------------------------------------------

_GLOB_CACHE: dict[str, re.Pattern] = {}


def _glob_regex(pattern: str) -> re.Pattern:
    rx = _GLOB_CACHE.get(pattern)
    if rx is not None:
        return rx
    i, out = 0, []
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(ch))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        else:
            out.append(re.escape(ch))
            i += 1
    # a pattern that names a folder also matches everything under it
    rx = re.compile("".join(out) + "(?:/.*)?")
    _GLOB_CACHE[pattern] = rx
    return rx


def glob_match(rel_path: str, pattern: str) -> bool:
    """Match a POSIX path relative to the config folder. A pattern without `/` matches any one
    path component (`build`, `*.ipynb`); with `/` it is anchored at the config folder
    (`legacy/**/*.py`, `scripts/`). `**` spans folders; a folder pattern covers its contents."""
    pat = pattern.strip()
    if not pat:
        return False
    if pat.startswith("./"):
        pat = pat[2:]
    pat = pat.rstrip("/") if len(pat) > 1 else pat
    if "/" not in pat:
        rx = _glob_regex(pat)
        parts = rel_path.split("/")
        return any(rx.fullmatch(part) or rx.fullmatch("/".join(parts[i:])) for i, part in enumerate(parts))
    return bool(_glob_regex(pat.lstrip("/")).fullmatch(rel_path))


# -- loading -------------------------------------------------------------------------------------

def find_config_file(start) -> Path | None:
    """The nearest config file at or above `start` (a file or a folder)."""
    p = Path(os.path.abspath(start))
    folder = p if p.is_dir() else p.parent
    for d in (folder, *folder.parents):
        for name in CONFIG_FILES:
            cand = d / name
            if cand.is_file():
                if name == "pyproject.toml" and not _has_tool_table(cand):
                    continue
                return cand
    return None


_TOOL_TABLE_CACHE: dict[tuple[str, int], bool] = {}


def _has_tool_table(path: Path) -> bool:
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return False
    hit = _TOOL_TABLE_CACHE.get(key)
    if hit is None:
        hit = _TOOL_TABLE_CACHE[key] = _read_has_tool_table(path)
    return hit


def _read_has_tool_table(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    # cheap test first; a parse confirms it
    if "gradpath" not in text:
        return False
    if tomllib is None:
        return True
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return bool(re.search(r"^\s*\[\s*tool\s*\.\s*gradpath\b", text, re.M))
    return isinstance(data.get("tool"), dict) and "gradpath" in data["tool"]


_CACHE: dict[tuple[str, int], tuple[ProjectConfig, list[str]]] = {}


def load_project_config(path) -> tuple[ProjectConfig, list[str]]:
    """The configuration that applies to `path` (a file or folder): found by walking up from it.
    Returns (config, warnings); an empty config when there is no config file. Cached per config
    file and modification time, so calling this for every file is cheap."""
    cfg_file = find_config_file(path)
    if cfg_file is None:
        return ProjectConfig(), []
    return load_config_file(cfg_file)


def load_config_file(cfg_file) -> tuple[ProjectConfig, list[str]]:
    """Read one config file (`pyproject.toml` or `gradpath.toml`, chosen by its name: any other
    name is read like `gradpath.toml`)."""
    cfg_file = Path(os.path.abspath(cfg_file))
    try:
        mtime = cfg_file.stat().st_mtime_ns
    except OSError as exc:
        return ProjectConfig(path=cfg_file), [f"{cfg_file}: cannot read: {exc.strerror or exc}"]
    key = (str(cfg_file), mtime)
    hit = _CACHE.get(key)
    if hit is not None:
        return _copy(hit[0]), list(hit[1])
    cfg, warnings = _load(cfg_file)
    _CACHE[key] = (cfg, warnings)
    return _copy(cfg), list(warnings)


def _copy(cfg: ProjectConfig) -> ProjectConfig:
    return ProjectConfig(cfg.path, None if cfg.select is None else list(cfg.select), list(cfg.ignore),
                         dict(cfg.severity), list(cfg.exclude),
                         {k: list(v) for k, v in cfg.per_file_ignores.items()},
                         LiveLimits(cfg.live.timeout_seconds, cfg.live.memory_mb))


def _load(cfg_file: Path) -> tuple[ProjectConfig, list[str]]:
    cfg = ProjectConfig(path=cfg_file)
    is_pyproject = cfg_file.name == "pyproject.toml"
    where = "[tool.gradpath]" if is_pyproject else ""
    if tomllib is None:  # pragma: no cover
        return cfg, [f"{cfg_file}: cannot read TOML on this Python without the 'tomli' package"]
    try:
        data = tomllib.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return cfg, [f"{cfg_file}: cannot read: {getattr(exc, 'strerror', None) or exc}"]
    except tomllib.TOMLDecodeError as exc:
        return cfg, [f"{cfg_file}: not valid TOML ({exc}); no settings from it apply"]
    if is_pyproject:
        table = data.get("tool", {}).get("gradpath", {}) if isinstance(data.get("tool"), dict) else {}
    else:
        table = data
    warnings: list[str] = []
    if not isinstance(table, dict):
        return cfg, [f"{cfg_file}: {where or 'the file'} must be a table of settings"]
    _apply_table(cfg, table, f"{cfg_file}", where, warnings)
    return cfg, warnings


def _key_name(where: str, key: str) -> str:
    return f"{where} {key}".strip() if where else key


def _suggest(key: str, allowed) -> str:
    norm = key.replace("_", "-").lower()
    for a in allowed:
        if a == norm:
            return f" (did you mean '{a}'?)"
    import difflib
    close = difflib.get_close_matches(norm, list(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _valid_selector(s: str) -> bool:
    s = s.strip()
    if not s:
        return False
    if s.upper() == "ALL":
        return True
    return any(code.startswith(s.upper()) for code in catalog.RULES) or \
        s in {r.slug for r in catalog.RULES.values()}


def _selectors(value, file: str, key: str, warnings: list[str]) -> list[str] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        warnings.append(f"{file}: {key}: expected a list of {SELECTOR_HELP}; got {value!r}; ignored")
        return None
    out = []
    for v in value:
        if not isinstance(v, str):
            warnings.append(f"{file}: {key}: {v!r} is not a string; allowed: {SELECTOR_HELP}; "
                            "this entry is ignored")
        elif not _valid_selector(v):
            warnings.append(f"{file}: {key}: unknown rule selector {v!r}; allowed: {SELECTOR_HELP} "
                            "(`gradpath rules` lists them); this entry is ignored")
        else:
            out.append(v.strip())
    return out


def _apply_table(cfg: ProjectConfig, table: dict, file: str, where: str, warnings: list[str]) -> None:
    for key, value in table.items():
        name = _key_name(where, key)
        if key not in TOP_KEYS:
            warnings.append(f"{file}: unknown key {name!r}{_suggest(key, TOP_KEYS)}; "
                            f"allowed keys: {', '.join(TOP_KEYS)}; ignored")
            continue
        if key == "select":
            sel = _selectors(value, file, name, warnings)
            if sel is not None:
                cfg.select = sel
        elif key == "ignore":
            ign = _selectors(value, file, name, warnings)
            if ign is not None:
                cfg.ignore = ign
        elif key == "exclude":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                warnings.append(f"{file}: {name}: expected a list of glob patterns (e.g. [\"build/\", "
                                f"\"**/legacy_*.py\"]); got {value!r}; ignored")
                continue
            for v in value:
                if isinstance(v, str) and v.strip():
                    cfg.exclude.append(v)
                else:
                    warnings.append(f"{file}: {name}: {v!r} is not a glob pattern string; this entry is ignored")
        elif key == "severity":
            if not isinstance(value, dict):
                warnings.append(f"{file}: {name}: expected a table of rule code or prefix = "
                                f"\"error\" | \"warning\" | \"info\"; got {value!r}; ignored")
                continue
            for code, sev in value.items():
                if not _valid_selector(code):
                    warnings.append(f"{file}: {name}.{code}: unknown rule selector {code!r}; allowed: "
                                    f"{SELECTOR_HELP}; this entry is ignored")
                elif not isinstance(sev, str) or sev.lower() not in SEVERITIES:
                    warnings.append(f"{file}: {name}.{code}: {sev!r} is not a severity; allowed: "
                                    f"{', '.join(SEVERITIES)}; this entry is ignored")
                else:
                    cfg.severity[_canonical_selector(code)] = sev.lower()
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                warnings.append(f"{file}: {name}: expected a table of glob = [codes]; got {value!r}; ignored")
                continue
            for pat, codes in value.items():
                sel = _selectors(codes, file, f"{name}.{pat!r}", warnings)
                if sel:
                    cfg.per_file_ignores[pat] = sel
        elif key == "live":
            if not isinstance(value, dict):
                warnings.append(f"{file}: {name}: expected a table with keys {', '.join(LIVE_KEYS)}; "
                                f"got {value!r}; ignored")
                continue
            for lk, lv in value.items():
                lname = f"{name}.{lk}"
                if lk == "timeout-seconds":
                    if isinstance(lv, bool) or not isinstance(lv, (int, float)) or not 0 < lv <= 3600:
                        warnings.append(f"{file}: {lname}: expected a number of seconds, more than 0 and "
                                        f"at most 3600; got {lv!r}; the default applies")
                    else:
                        cfg.live.timeout_seconds = float(lv)
                elif lk == "memory-mb":
                    if isinstance(lv, bool) or not isinstance(lv, int) or not 64 <= lv <= 1_048_576:
                        warnings.append(f"{file}: {lname}: expected a whole number of megabytes from 64 "
                                        f"to 1048576; got {lv!r}; the default applies")
                    else:
                        cfg.live.memory_mb = lv
                else:
                    warnings.append(f"{file}: unknown key {lname!r}{_suggest(lk, LIVE_KEYS)}; "
                                    f"allowed keys: {', '.join(LIVE_KEYS)}; ignored")


def _canonical_selector(s: str) -> str:
    s = s.strip()
    for r in catalog.RULES.values():
        if s == r.slug:
            return r.code
    return s.upper()


# -- editor settings override the project --------------------------------------------------------

def merge_options(project: Options, editor: Options | None) -> Options:
    """Options for one file when the editor has settings too; the editor wins:
    - `select`: the editor's, when it set one (differs from the default), else the project's;
    - `ignore`: the project's (its `ignore` and matching `per-file-ignores`) plus the editor's;
    - `severity`: both, the editor's entry winning for the same key;
    - any other field: the editor's when it differs from the default.
    Neither argument is modified."""
    if editor is None:
        return _clone(project)
    default = Options()
    out = _clone(project)
    for f in fields(Options):
        ev = getattr(editor, f.name)
        if f.name == "severity":
            merged = dict(project.severity)
            merged.update(ev)
            out.severity = merged
        elif f.name == "ignore":
            out.ignore = list(dict.fromkeys(list(project.ignore) + list(ev)))
        elif ev != getattr(default, f.name):
            setattr(out, f.name, list(ev) if isinstance(ev, list) else ev)
    return out


def _clone(o: Options) -> Options:
    import copy
    return copy.deepcopy(o)


def options_for_file(file_path, editor: Options | None = None) -> tuple[Options, list[str]]:
    """One call for a language server: find the project config for `file_path`, build its options,
    and let the editor's options override them. Returns (options, config warnings)."""
    cfg, warnings = load_project_config(file_path)
    return merge_options(cfg.options_for(file_path), editor), warnings
