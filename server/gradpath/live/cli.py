"""`gradpath confirm PATHS [--format text|json] [--python PY] [--timeout S] [--select/--ignore] [--report F]`.

Analyses like `gradpath check`, then runs one tiny CPU training step per script and attaches a verdict
to every finding: a script runs for its own findings, and a finding in a module (`models/net.py`) is
judged on the run of a script that reaches it (project_confirm.py; `not-run` with the reason when
none does), each script once. JSON: `{"findings": [<check object> + "live": {verdict, mode, evidence, data}],
"run": {...}}` where `run` is the file's run object (timings, mode, captured output, error), or
`{"files": [run, ...]}` when several files were confirmed. Exit codes as `check`: 0 no findings,
1 findings, 2 usage/interpreter errors. `--report F.html|F.svg|F.png` also writes the gradient-flow
picture (gradpath.live.report): every file's step in one self-contained HTML file, or one file's step
as an image.
"""
from __future__ import annotations

import json
import os
import sys

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def run_confirm(args) -> int:
    from gradpath import cli as main_cli
    from gradpath.live import verdicts as V
    from gradpath.live.project_confirm import confirm_reports
    from gradpath.live.service import LiveError, LiveService

    timeout = float(getattr(args, "timeout", None) or 20.0)
    report_path = getattr(args, "report", None)
    if report_path:
        from gradpath.live.report.output import ReportError, report_format
        try:
            report_format(report_path)
        except ReportError as exc:
            print(f"gradpath: {exc}", file=sys.stderr)
            return EXIT_ERROR
    views: list[dict] = []
    svc = LiveService(python=getattr(args, "python", None), timeout_s=timeout)
    try:
        svc.start()  # the worker warms up (imports torch) while the files are analysed
    except LiveError as exc:
        print(f"gradpath: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        reports, errors = main_cli.collect(args)
    except BaseException:
        svc.close()
        raise
    for e in errors:
        print(f"gradpath: {e}", file=sys.stderr)
    out_findings, runs, total, with_findings = [], [], 0, 0
    words_used: set[str] = set()
    named = {os.path.realpath(p) for p in args.paths if os.path.isfile(p)}
    try:
        # each script runs once: for its own findings and for those of the modules it reaches
        # (gradpath.live.project_confirm); every finding is reported under its own file
        try:
            outcome = confirm_reports(svc, reports, named, timeout)
        except LiveError as exc:
            print(f"gradpath: {exc}", file=sys.stderr)
            return EXIT_ERROR
        for job, run, live in outcome.runs:
            if report_path:
                from gradpath.live.report.view import finding_dict, flow_view
                err = run.get("error") or {}
                stopped = (f"{err['type'] + ': ' if err.get('type') else ''}{err.get('message') or ''}"
                           + (f" (line {err['line']})" if err.get("line") else "")) if err else None
                shown = [finding_dict(f, live.verdicts.get(f.id)) for f in
                         (job.report.result.findings if job.report is not None else [])]
                shown += [finding_dict(f, live.via.get((p, f.id))) for p, (_r, fs) in job.targets.items() for f in fs]
                views.append(flow_view(run.get("flow"), shown, title=str(job.display), path=str(job.script),
                                       stopped=stopped))
            run.pop("flow", None)  # the table goes to --report, not into the JSON output
            runs.append(run)
        for rep in reports:
            findings = list(rep.result.findings)
            total += len(findings)
            with_findings += bool(findings)
            for f in findings:
                v = outcome.verdicts.get((os.path.abspath(str(rep.path)), f.id))
                vd = v.to_dict() if v is not None else {"verdict": "not-run", "mode": "none",
                                                        "evidence": "no verdict", "data": {}}
                words_used.add(vd.get("verdict"))
                if args.format == "json":
                    cell = None
                    mapping = getattr(rep, "mapping", None)
                    if mapping is not None:
                        from gradpath.notebook import map_finding
                        cell, mf = map_finding(mapping, f)
                        obj = main_cli.finding_json(rep.display, mf, cell)
                    else:
                        obj = main_cli.finding_json(rep.display, f)
                    obj["live"] = vd
                    out_findings.append(obj)
                else:
                    print(f"{rep.display}:{f.span.line}:{f.span.col + 1}: {f.code} {f.message}")
                    ev = (vd.get("evidence") or "").splitlines() or [""]
                    mode = f" ({vd['mode']})" if vd.get("mode") and vd["mode"] != "none" else ""
                    print(f"    live: {V.headline(vd)}{mode}: {ev[0]}")
                    for line in ev[1:16]:
                        print(f"    {line.rstrip()}")
        if args.format != "json":
            for run in runs:
                _print_run_text(run)
    finally:
        svc.close()
    if report_path:
        from gradpath.live.report.output import ReportError, write_report
        try:
            print(f"gradpath: {write_report(report_path, views)}", file=sys.stderr)
        except (ReportError, OSError) as exc:
            print(f"gradpath: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if args.format == "json":
        run_obj = runs[0] if len(runs) == 1 else {"files": runs}
        json.dump({"findings": out_findings, "run": run_obj}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif total:
        sys.stdout.flush()
        seen = [w for w in (V.CONFIRMED, V.NOT_REPRODUCED, V.NOT_RUN) if w in words_used]
        for w in seen:  # what the verdict words mean, once per run (docs/usage.md has more)
            print(f"  {w}: {V.VERDICT_MEANING[w]}", file=sys.stderr)
        print(f"Found {total} problem{'s' if total != 1 else ''} in {with_findings} file"
              f"{'s' if with_findings != 1 else ''}.", file=sys.stderr)
    else:
        sys.stdout.flush()
        print(f"No problems found in {len(reports)} file{'s' if len(reports) != 1 else ''}.", file=sys.stderr)
    if errors or main_cli._incomplete(reports):
        return EXIT_ERROR
    return EXIT_FINDINGS if total else EXIT_CLEAN


def _print_run_text(run: dict) -> None:
    t = run.get("timings") or {}
    err = run.get("error") or {}
    status = run.get("status")
    line = f"  run: {run.get('path')}: {status}, {t.get('total_ms')} ms"
    if run.get("for"):
        line += f" (for {', '.join(run['for'])})"
    if run.get("cold"):
        line += " (cold worker)"
    print(line, file=sys.stderr)
    if err:
        where = f" (line {err.get('line')})" if err.get("line") else ""
        msg = (err.get("type") + ": " if err.get("type") else "") + str(err.get("message") or "")
        print(f"  error{where}: {msg.splitlines()[0] if msg else ''}", file=sys.stderr)
