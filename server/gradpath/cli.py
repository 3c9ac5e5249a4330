"""Command line: gradpath check|confirm|serve|rules|explain."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gradpath import __version__
from gradpath.analysis import catalog
from gradpath.analysis.engine import Options, analyze

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class UsageError(Exception):
    pass


def iter_python_files(paths: list[str]) -> list[Path]:
    """Files given, and `*.py` under folders given (skipping hidden folders and virtualenvs)."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"{p}: no such file or directory")
        if path.is_dir():
            for f in sorted(path.rglob("*.py")):
                rel = f.relative_to(path).parts
                if any(part.startswith(".") or part in ("__pycache__", "node_modules", "venv", ".venv",
                                                         "site-packages") for part in rel[:-1]):
                    continue
                out.append(f)
        else:
            out.append(path)
    return out


def read_source(path: Path) -> str:
    data = path.read_bytes()
    try:
        import tokenize, io
        enc, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(enc)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def finding_json(path: str, f) -> dict:
    """The stable JSON shape: 1-based lines and columns, columns in characters."""
    s = f.span
    return {
        "path": path,
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
        "line": s.line,
        "column": s.col + 1,
        "end_line": s.end_line,
        "end_column": s.end_col + 1,
        "fixes": [
            {"title": fx.title, "safe": fx.safe,
             "edits": [{"line": e.span.line, "column": e.span.col + 1, "end_line": e.span.end_line,
                        "end_column": e.span.end_col + 1, "new_text": e.new_text} for e in fx.edits]}
            for fx in f.fixes
        ],
    }


def _split_codes(values: list[str] | None) -> list[str]:
    out = []
    for v in values or []:
        out += [c.strip() for c in v.split(",") if c.strip()]
    return out


def _options(args) -> Options:
    opts = Options()
    sel = _split_codes(args.select)
    if sel:
        opts.select = sel
    opts.ignore = _split_codes(args.ignore)
    for code in opts.select + opts.ignore:
        if code.upper() != "ALL" and not any(c.startswith(code.upper()) for c in catalog.RULES) \
                and code not in {r.slug for r in catalog.RULES.values()}:
            raise UsageError(f"unknown rule selector {code!r} (expected a code like GP102 or a prefix like GP1)")
    return opts


def analyze_paths(args) -> tuple[list[tuple[str, object]], list[str]]:
    """[(display path, AnalysisResult)], [error messages]"""
    opts = _options(args)
    results, errors = [], []
    for f in iter_python_files(args.paths):
        try:
            text = read_source(f)
        except OSError as exc:
            errors.append(f"{f}: cannot read: {exc.strerror or exc}")
            continue
        results.append((str(f), analyze(text, str(f), opts)))
    return results, errors


def cmd_check(args) -> int:
    results, errors = analyze_paths(args)
    for e in errors:
        print(f"gradpath: {e}", file=sys.stderr)
    total = sum(len(r.findings) for _, r in results)
    if args.format == "json":
        json.dump([finding_json(p, f) for p, r in results for f in r.findings], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for p, r in results:
            for f in r.findings:
                print(f"{p}:{f.span.line}:{f.span.col + 1}: {f.code} {f.message}")
        if total:
            print(f"Found {total} problem{'s' if total != 1 else ''} in {len(results)} file{'s' if len(results) != 1 else ''}.",
                  file=sys.stderr)
    if errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if total else EXIT_CLEAN


def cmd_rules(args) -> int:
    for rule in catalog.RULES.values():
        if rule.code == catalog.SYNTAX_ERROR:
            continue
        print(f"{rule.code}  {rule.slug:32s} {rule.severity:8s} {rule.group}")
    return EXIT_CLEAN


def explain_text(code: str) -> str:
    rule = catalog.RULES.get(code.upper())
    if rule is None:
        raise UsageError(f"unknown rule {code!r}; `gradpath rules` lists them")
    page = _docs_page(rule.code)
    if page is not None:
        return page
    return (f"{rule.code} ({rule.slug}), {rule.severity}\n\n"
            f"What it catches: {rule.catches}\n\nWhat PyTorch does: {rule.behaviour}\n\nFix: {rule.fix}\n")


def _docs_page(code: str) -> str | None:
    here = Path(__file__).resolve().parent
    for base in (here / "data" / "docs", here.parent.parent / "docs" / "rules"):
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

    def common(sp):
        sp.add_argument("paths", nargs="+", help="files or folders (folders are searched for *.py)")
        sp.add_argument("--select", action="append", help="codes or prefixes to report (GP1, GP102)")
        sp.add_argument("--ignore", action="append", help="codes or prefixes to leave out")
        sp.add_argument("--format", choices=["text", "json"], default="text")

    c = sub.add_parser("check", help="analyse files and print findings")
    common(c)
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("confirm", help="analyse, then run one tiny CPU training step to confirm each finding")
    common(c)
    c.add_argument("--python", help="interpreter with torch for the live step (default: this one)")
    c.add_argument("--timeout", type=float, default=20.0, help="wall-clock limit per file, seconds")
    c.set_defaults(func=cmd_confirm)

    c = sub.add_parser("serve", help="run the language server on stdio")
    c.add_argument("--stdio", action="store_true", help="accepted for editor compatibility (stdio is the default)")
    c.add_argument("--log-file", help="write the server log here")
    c.set_defaults(func=cmd_serve)

    c = sub.add_parser("rules", help="list the rule codes")
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
