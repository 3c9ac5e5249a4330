"""Command line: gradpath check|confirm|serve|rules|explain."""
from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gradpath import __version__
from gradpath.analysis import catalog
from gradpath.analysis.engine import Options, analyze
from gradpath.analysis.findings import Finding, Fix
from gradpath.files import SKIP_DIRS, UsageError, iter_python_files, read_source
from gradpath.output import (FORMATS, Item, Progress, finding_json, format_github, format_json,
                             format_sarif, format_statistics, format_text)

__all__ = ["main", "build_parser", "analyze_paths", "finding_json", "iter_python_files", "read_source",
           "explain_text", "UsageError"]

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
MAX_FIX_PASSES = 8
_SKIP_DIRS = SKIP_DIRS  # moved to gradpath.files (the server reads files without importing the CLI)


def _split_codes(values: list[str] | None) -> list[str]:
    out = []
    for v in values or []:
        out += [c.strip() for c in v.split(",") if c.strip()]
    return out


def _check_selectors(codes: list[str]) -> None:
    for code in codes:
        if code.upper() != "ALL" and not any(c.startswith(code.upper()) for c in catalog.RULES) \
                and code not in {r.slug for r in catalog.RULES.values()}:
            raise UsageError(f"unknown rule selector {code!r} (expected a code like GP102 or a prefix like GP1)")


def _options(args) -> Options:
    """Options from the command line alone (no project configuration)."""
    opts = Options()
    sel = _split_codes(getattr(args, "select", None))
    if sel:
        opts.select = sel
    opts.ignore = _split_codes(getattr(args, "ignore", None))
    _check_selectors(opts.select + opts.ignore)
    return opts


# -- collecting and analysing files ------------------------------------------------------------------

@dataclass
class FileReport:
    path: Path
    display: str
    text: str
    result: object  # AnalysisResult
    options: Options
    notebook: object = None  # notebook.Notebook
    mapping: object = None  # notebook.NotebookMapping
    unused: list[Finding] = field(default_factory=list)
    resolver: object = None
    config: object = None  # projectconfig.ProjectConfig that applied (its .live has the live-step limits)

    def items(self) -> list[Item]:
        out = []
        for f in list(self.result.findings) + list(self.unused):
            if self.mapping is not None:
                from gradpath.notebook import map_finding
                cell, mf = map_finding(self.mapping, f)
                out.append(Item(self.display, mf, cell))
            else:
                out.append(Item(self.display, f))
        out.sort(key=lambda it: (it.cell if it.cell is not None else -1, it.finding.sort_key()))
        return out


class _Configs:
    """Project configuration per file: `--config` for all, or found by walking up (cached)."""

    def __init__(self, args, warn):
        from gradpath import projectconfig
        self._pc = projectconfig
        self._warn = warn
        self._seen: set[str] = set()
        self._fixed = None
        self._no_config = bool(getattr(args, "isolated", False))
        cfg_path = getattr(args, "config", None)
        if cfg_path:
            if not Path(cfg_path).is_file():
                raise UsageError(f"{cfg_path}: no such config file")
            self._fixed = self._report(projectconfig.load_config_file(cfg_path))
        cli_sel = _split_codes(getattr(args, "select", None))
        cli_ign = _split_codes(getattr(args, "ignore", None))
        _check_selectors(cli_sel + cli_ign)
        self.cli_select, self.cli_ignore = cli_sel, cli_ign

    def _report(self, loaded):
        cfg, warnings = loaded
        key = str(cfg.path)
        if key not in self._seen:
            self._seen.add(key)
            for w in warnings:
                self._warn(w)
        return cfg

    def config_for(self, path: Path):
        if self._no_config:
            return self._pc.ProjectConfig()
        if self._fixed is not None:
            return self._fixed
        return self._report(self._pc.load_project_config(path))

    def options_for(self, cfg, path: Path) -> Options:
        opts = cfg.options_for(path)
        if self.cli_select:
            opts.select = list(self.cli_select)
        opts.ignore = list(dict.fromkeys(opts.ignore + self.cli_ignore))
        return opts


_RESOLVERS: dict[tuple[str, bool], object] = {}


def _resolver(root, use_jedi: bool):
    """The project's `gradpath.analysis.resolve.Resolver` (imported classes, re-exports) when that
    module exists, one per project root; None otherwise: the analysis then resolves names within
    the file only. Never raises."""
    key = (os.path.abspath(root or os.getcwd()), use_jedi)
    if key not in _RESOLVERS:
        try:
            from gradpath.analysis.resolve import Resolver
            try:
                _RESOLVERS[key] = Resolver(key[0], None, use_jedi)
            except TypeError:
                _RESOLVERS[key] = Resolver(root=key[0], sys_path=None, use_jedi=use_jedi)
        except Exception:
            _RESOLVERS[key] = None
    return _RESOLVERS[key]


def _analyze_file(path: Path, display: str, opts: Options, resolver=None) -> FileReport:
    if path.suffix == ".ipynb":
        from gradpath.notebook import Notebook, NotebookError
        try:
            nb = Notebook.read(path)
        except NotebookError as exc:
            raise OSError(str(exc).split(": ", 1)[-1]) from exc
        from gradpath.notebook import analyze_cells
        result = analyze_cells(nb.cells, str(path), opts, resolver)
        return FileReport(path, display, result.source.text, result, opts, nb, result.notebook_mapping,
                          resolver=resolver)
    text = read_source(path)
    return FileReport(path, display, text, analyze(text, str(path), opts, resolver), opts, resolver=resolver)


def collect(args, warn=None, progress: bool = False) -> tuple[list[FileReport], list[str]]:
    """Analyse every file the arguments name under its project configuration."""
    warn = warn or (lambda msg: print(f"gradpath: warning: {msg}", file=sys.stderr))
    configs = _Configs(args, warn)
    files = iter_python_files(args.paths, notebooks=True)
    reports, errors = [], []
    bar = Progress(len(files), enabled=None if progress else False)
    use_jedi = bool(getattr(args, "jedi", False))
    try:
        # the project model of each folder given (a file: the project it belongs to), then every
        # file analysed against it, in parallel processes; reports in the order of `files`
        from gradpath import batch
        roots = batch.project_roots(args.paths)
        projects = batch.build_projects(
            roots, lambda f: configs.config_for(Path(f)).is_excluded(Path(f)),
            use_cache=not getattr(args, "no_cache", False), targets=batch.single_files(args.paths),
            use_jedi=use_jedi, workers=batch.workers_for(len(files), getattr(args, "jobs", None)))
        jobs, cfgs = [], []
        for f in files:
            cfg = configs.config_for(f)
            if cfg.is_excluded(f):
                bar.step()
                continue
            jobs.append((f, str(f), configs.options_for(cfg, f), cfg.root, batch.root_of(f, roots)))
            cfgs.append(cfg)
        workers = batch.workers_for(len(jobs), getattr(args, "jobs", None))
        for (f, _d, _o, cfg_root, proj), cfg, (status, rep) in zip(
                jobs, cfgs, batch.analyze_jobs(jobs, projects, use_jedi, workers, on_done=bar.step)):
            if status != "ok":
                errors.append(rep)
                continue
            rep.config = cfg
            rep.resolver = batch.ProjectResolver(_resolver(cfg_root, use_jedi), projects.get(proj))
            reports.append(rep)
    finally:
        bar.close()
    return reports, errors


def analyze_paths(args) -> tuple[list[tuple[str, object]], list[str]]:
    """[(display path, AnalysisResult)], [error messages]. Project configuration applies. For a
    notebook the result covers its joined code cells and carries `result.notebook_mapping`
    (see gradpath.notebook.map_span)."""
    reports, errors = collect(args)
    return [(r.display, r.result) for r in reports], errors


def _enabled(opts: Options):
    from gradpath.analysis.engine import _selected
    return lambda code: _selected(code, opts)


def _add_unused(reports: list[FileReport]) -> None:
    from gradpath.analysis.suppressions import unused_findings
    for r in reports:
        r.unused = unused_findings(r.result, _enabled(r.options))


# -- fixes ---------------------------------------------------------------------------------------------

def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer(r"\r\n|\r|\n", text):
        starts.append(m.end())
    return starts


def _offset(text: str, starts: list[int], line: int, col: int) -> int:
    if line > len(starts):
        return len(text)
    start = starts[line - 1]
    end = starts[line] if line < len(starts) else len(text)
    content = text[start:end].rstrip("\r\n")
    return start + max(0, min(col, len(content)))


def choose_fix(f: Finding, unsafe: bool) -> Fix | None:
    """The fix `--fix` applies for a finding: its preferred safe fix (or its only safe one); with
    `unsafe`, the preferred fix or the only fix. Never a guess between alternatives."""
    cands = [fx for fx in f.fixes if fx.edits and (fx.safe or unsafe)]
    if not cands:
        return None
    pref = [fx for fx in cands if fx.preferred]
    if pref:
        return pref[0]
    safe = [fx for fx in cands if fx.safe]
    if len(safe) == 1:
        return safe[0]
    return cands[0] if len(cands) == 1 else None


def apply_fixes(text: str, fixes: list[Fix]) -> tuple[str, list[Fix]]:
    """Apply fixes whose edits do not overlap an earlier one's; returns (new text, applied)."""
    starts = _line_starts(text)
    taken: list[tuple[int, int]] = []
    edits: list[tuple[int, int, str]] = []
    applied = []
    for fx in fixes:
        ranges = [(_offset(text, starts, e.span.line, e.span.col),
                   _offset(text, starts, e.span.end_line, e.span.end_col), e.new_text) for e in fx.edits]
        if any(a > b for a, b, _ in ranges):
            continue
        clash = any(not (b < s or a > t) or (a == b == s == t) for a, b, _ in ranges for s, t in taken)
        if clash:
            continue
        taken += [(a, b) for a, b, _ in ranges]
        edits += ranges
        applied.append(fx)
    for a, b, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:a] + new + text[b:]
    return text, applied


@dataclass
class FixOutcome:
    new_text: str | None = None  # .py
    new_cells: dict[int, str] = field(default_factory=dict)  # notebook: cell index -> new source
    fixed: Counter = field(default_factory=Counter)
    unconverged: list[str] = field(default_factory=list)


def _fixable_findings(report: FileReport, result, unused: bool) -> list[Finding]:
    fs = list(result.findings)
    if unused:
        from gradpath.analysis.suppressions import unused_findings
        fs += unused_findings(result, _enabled(report.options))
    return sorted(fs, key=Finding.sort_key)


def fix_file(report: FileReport, unsafe: bool, unused: bool) -> FixOutcome:
    """Apply fixes to one file's text (or cells) until nothing more applies; nothing is written."""
    out = FixOutcome()
    opts = report.options
    if report.notebook is not None:
        from gradpath.notebook import analyze_cells, map_finding
        cells = [dict(c) for c in report.notebook.cells]
        result = report.result
        for _ in range(MAX_FIX_PASSES):
            mapping = result.notebook_mapping
            per_cell: dict[int, list[Fix]] = {}
            codes = Counter()
            for f in _fixable_findings(report, result, unused):
                fx = choose_fix(f, unsafe)
                if fx is None:
                    continue
                cell, mf = map_finding(mapping, f)
                mfx = next((m for m in mf.fixes if m.title == fx.title and m.safe == fx.safe), None)
                if mfx is None:
                    continue
                per_cell.setdefault(cell, []).append((f.code, mfx))
            changed = False
            new_cells = [dict(c) for c in cells]
            for cell, pairs in per_cell.items():
                src = _cell_text(cells[cell])
                new, applied = apply_fixes(src, [fx for _, fx in pairs])
                for code, fx in pairs:
                    if any(fx is a for a in applied):
                        codes[code] += 1
                if new != src:
                    new_cells[cell]["source"] = new
                    changed = True
            if not changed:
                break
            new_result = analyze_cells(new_cells, str(report.path), opts, report.resolver)
            if not _converged(result, new_result, codes, unused, report):
                out.unconverged += sorted(codes)
                break
            cells, result = new_cells, new_result
            out.fixed += codes
        for i, (old, new) in enumerate(zip(report.notebook.cells, cells)):
            if _cell_text(old) != _cell_text(new):
                out.new_cells[i] = _cell_text(new)
        return out
    text, result = report.text, report.result
    for _ in range(MAX_FIX_PASSES):
        chosen = []
        for f in _fixable_findings(report, result, unused):
            fx = choose_fix(f, unsafe)
            if fx is not None:
                chosen.append((f.code, fx))
        if not chosen:
            break
        new, applied = apply_fixes(text, [fx for _, fx in chosen])
        if new == text:
            break
        codes = Counter(code for code, fx in chosen if any(fx is a for a in applied))
        new_result = analyze(new, str(report.path), opts, report.resolver)
        if not _converged(result, new_result, codes, unused, report):
            out.unconverged += sorted(codes)
            break
        text, result = new, new_result
        out.fixed += codes
    out.new_text = text if text != report.text else None
    return out


def _cell_text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _converged(old, new, codes: Counter, unused: bool, report) -> bool:
    """A pass must remove what it fixed: otherwise a fix that does not cure its finding would be
    applied again and again."""
    def count(result):
        fs = _fixable_findings(report, result, unused)
        return Counter(f.code for f in fs)
    before, after = count(old), count(new)
    return all(after[c] <= before[c] - n for c, n in codes.items())


def _write_fixed(report: FileReport, outcome: FixOutcome) -> None:
    if report.notebook is not None:
        for i, src in outcome.new_cells.items():
            report.notebook.set_cell_text(i, src)
        report.notebook.write()
        return
    data = report.path.read_bytes()
    import tokenize
    try:
        enc, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        enc = "utf-8"
    bom = data.startswith(b"\xef\xbb\xbf")
    with open(report.path, "w", encoding="utf-8-sig" if bom and enc in ("utf-8", "utf-8-sig") else enc,
              newline="") as fh:
        fh.write(outcome.new_text)


def _diff(report: FileReport, outcome: FixOutcome) -> str:
    p = report.display
    a, b = ("", "") if os.path.isabs(p) else ("a/", "b/")
    if report.notebook is not None:
        chunks = []
        for i, src in sorted(outcome.new_cells.items()):
            old = report.notebook.cell_text(i)
            chunks.append("".join(difflib.unified_diff(
                _lines(old), _lines(src), f"{a}{p}:cell {i + 1}", f"{b}{p}:cell {i + 1}")))
        return "".join(chunks)
    return "".join(difflib.unified_diff(_lines(report.text), _lines(outcome.new_text), f"{a}{p}", f"{b}{p}"))


def _lines(s: str) -> list[str]:
    lines = s.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


# -- commands ----------------------------------------------------------------------------------------

def _emit(items: list[Item], fmt: str, errors: list[str]) -> None:
    if fmt == "json":
        sys.stdout.write(format_json(items))
    elif fmt == "sarif":
        sys.stdout.write(format_sarif(items, invocation_ok=not errors, notifications=errors))
    elif fmt == "github":
        sys.stdout.write(format_github(items))
    else:
        sys.stdout.write(format_text(items))


def _incomplete(reports: list[FileReport]) -> bool:
    """A file whose analysis hit the CPU time limit (it has a GP000 "analysis stopped after N s"
    finding): the run cannot say the code is clean, so it exits with status 2."""
    from gradpath.analysis.engine import is_incomplete
    return any(is_incomplete(r.result) for r in reports)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cmd_check(args) -> int:
    show_progress = not (args.diff or getattr(args, "quiet", False))
    reports, errors = collect(args, progress=show_progress)
    for e in errors:
        print(f"gradpath: {e}", file=sys.stderr)
    unused = bool(args.show_unused_suppressions)
    if unused:
        _add_unused(reports)

    fixed_total = Counter()
    if args.fix or args.diff:
        unsafe = bool(args.unsafe_fixes)
        diffs = []
        changed: set[str] = set()
        for r in reports:
            outcome = fix_file(r, unsafe, unused)
            if outcome.unconverged:
                print(f"gradpath: warning: {r.display}: the fix for {', '.join(outcome.unconverged)} did not "
                      "remove its finding; stopped fixing this file", file=sys.stderr)
            if outcome.new_text is None and not outcome.new_cells:
                continue
            fixed_total += outcome.fixed
            if args.diff:
                diffs.append(_diff(r, outcome))
            else:
                _write_fixed(r, outcome)
                changed.add(str(r.path))
        if args.diff:
            sys.stdout.write("".join(diffs))
            n = sum(fixed_total.values())
            if n:
                print(f"Would fix {_plural(n, 'problem')}.", file=sys.stderr)
            if errors or _incomplete(reports):
                return EXIT_ERROR
            return EXIT_CLEAN if (args.exit_zero or not diffs) else EXIT_FINDINGS
        # re-analyse what was written, so the report shows what remains
        if changed:
            reports2 = []
            for r in reports:
                if str(r.path) in changed:
                    try:
                        r2 = _analyze_file(r.path, r.display, r.options, r.resolver)
                        r2.config = r.config
                        r = r2
                    except OSError:
                        pass
                reports2.append(r)
            reports = reports2
            if unused:
                _add_unused(reports)

    items = [it for r in reports for it in r.items()]
    if args.statistics:
        sys.stdout.write(format_statistics(items, "json" if args.format == "json" else "text"))
    else:
        _emit(items, args.format, errors)
    total = len(items)
    if args.format == "text" and not args.statistics:
        n_fixed = sum(fixed_total.values())
        parts = []
        if n_fixed:
            parts.append(f"Fixed {_plural(n_fixed, 'problem')}" + (f", {total} remaining." if total else "."))
        if total:
            parts.append(f"Found {_plural(total, 'problem')} in {_plural(len({it.path for it in items}), 'file')}.")
            safe = sum(1 for it in items if choose_fix(it.finding, False))
            more = sum(1 for it in items if choose_fix(it.finding, True)) - safe
            if safe and not args.fix:
                parts.append(f"[*] {safe} fixable with `--fix`.")
            if more and not args.unsafe_fixes:
                parts.append(f"{more} more fixable with `--fix --unsafe-fixes`.")
        if not parts:
            parts.append(f"No problems found in {_plural(len(reports), 'file')}.")
        sys.stdout.flush()  # the findings first, then the summary, also when both go to one pipe
        print(" ".join(parts), file=sys.stderr)
    if errors or _incomplete(reports):
        return EXIT_ERROR
    if args.exit_zero:
        return EXIT_CLEAN
    return EXIT_FINDINGS if total else EXIT_CLEAN


def cmd_rules(args) -> int:
    if getattr(args, "format", "text") == "json":
        json.dump([{"code": r.code, "slug": r.slug, "severity": r.severity, "group": r.group,
                    "url": r.docs_url} for r in catalog.RULES.values() if r.code != catalog.SYNTAX_ERROR],
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_CLEAN
    for rule in catalog.RULES.values():
        if rule.code == catalog.SYNTAX_ERROR:
            continue
        print(f"{rule.code}  {rule.slug:32s} {rule.severity:8s} {rule.group}")
    return EXIT_CLEAN


def explain_text(code: str) -> str:
    rule = catalog.RULES.get(code.upper())
    if rule is None:
        rule = next((r for r in catalog.RULES.values() if r.slug == code), None)
    if rule is None:
        raise UsageError(f"unknown rule {code!r}; `gradpath rules` lists them")
    page = _docs_page(rule.code)
    if page is not None:
        return page
    return (f"{rule.code} ({rule.slug}), {rule.severity}\n\n"
            f"What it catches: {rule.catches}\n\nWhat PyTorch does: {rule.behaviour}\n\nFix: {rule.fix}\n")


def docs_dirs() -> list[Path]:
    """Where rule pages are read from: the copy inside the installed package (made by the build,
    see setup.py), then the repository's docs/rules when running from a checkout."""
    here = Path(__file__).resolve().parent
    return [here / "data" / "docs", here.parent.parent / "docs" / "rules"]


def _docs_page(code: str) -> str | None:
    for base in docs_dirs():
        page = base / f"{code}.md"
        if page.is_file():
            return page.read_text(encoding="utf-8")
    return None


def cmd_explain(args) -> int:
    print(explain_text(args.code), end="")
    return EXIT_CLEAN


def cmd_serve(args) -> int:
    from gradpath.lsp.server import main as serve_main
    return serve_main(args) or 0


def cmd_confirm(args) -> int:
    from gradpath.live.cli import run_confirm
    return run_confirm(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradpath", description=__doc__)
    p.add_argument("--version", action="version", version=f"gradpath {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, formats=("text", "json")):
        sp.add_argument("paths", nargs="+", help="files or folders (folders are searched for *.py and *.ipynb)")
        sp.add_argument("--select", action="append", help="codes or prefixes to report (GP1, GP102); "
                        "replaces the project's select")
        sp.add_argument("--ignore", action="append", help="codes or prefixes to leave out (added to the project's)")
        sp.add_argument("--format", choices=list(formats), default="text")
        sp.add_argument("--config", metavar="PATH", help="use this pyproject.toml or gradpath.toml for every file "
                        "instead of searching upwards from each file")
        sp.add_argument("--isolated", action="store_true", help="ignore all configuration files")
        sp.add_argument("--jedi", action="store_true", help="also ask jedi about names imported from other "
                        "modules (slower: a cold pass over torch takes seconds)")

    c = sub.add_parser("check", help="analyse files and print findings")
    common(c, FORMATS)
    c.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    c.add_argument("--unsafe-fixes", action="store_true", help="with --fix or --diff, apply unsafe fixes too")
    c.add_argument("--diff", action="store_true", help="print the fixes as a unified diff; write nothing")
    c.add_argument("--statistics", action="store_true", help="print how many findings of each code, not the findings")
    c.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    c.add_argument("--show-unused-suppressions", action="store_true",
                   help="report `# gradpath: ignore[...]` / `# noqa: GP...` comments that suppress nothing")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.add_argument("--no-cache", action="store_true", help="compute every module summary afresh (do not read or "
                   "write the summary cache under ~/.cache/gradpath)")
    c.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: one per core for "
                   "12 files or more)")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("confirm", help="analyse, then run one tiny CPU training step to confirm each finding")
    common(c)
    c.add_argument("--python", help="interpreter with torch for the live step (default: this one)")
    c.add_argument("--timeout", type=float, default=20.0, help="wall-clock limit per script run, seconds")
    c.add_argument("--report", metavar="FILE",
                   help="write the gradient-flow picture: .html (every file's step, self-contained), "
                        ".svg or .png (one file's step)")
    c.set_defaults(func=cmd_confirm)

    c = sub.add_parser("serve", help="run the language server on stdio")
    c.add_argument("--stdio", action="store_true", help="accepted for editor compatibility (stdio is the default)")
    c.add_argument("--log-file", help="write the server log here")
    c.set_defaults(func=cmd_serve)

    c = sub.add_parser("rules", help="list the rule codes")
    c.add_argument("--format", choices=["text", "json"], default="text")
    c.set_defaults(func=cmd_rules)

    c = sub.add_parser("explain", help="print a rule's explanation")
    c.add_argument("code")
    c.set_defaults(func=cmd_explain)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_ERROR
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"gradpath: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
