"""`gradpath confirm` over a project: which script runs for which findings, each script run once.

A file that is itself a script (see reach.script_kind) runs as it is, for its own findings. A
finding in a module (`models/net.py`) is judged on the run of a script that reaches it
(reach.scripts_for: the file at the other end of the finding, else a script that imports the
module); the scripts are grouped so that one run serves every module finding it is picked for.
A finding whose first script did not reach its line tries the next one (at most reach.MAX_SCRIPTS
scripts per finding). A module that no script reaches gets `not-run` with the reason; when it has a
finding the model-only mode can judge (GP1), the module itself still runs for those.

    jobs = Planner(reports, named).plan()
    outcome = run_jobs(svc, jobs, timeout)     # outcome.verdicts[(path, finding id)], outcome.runs
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from gradpath.live import reach
from gradpath.live import verdicts as V
from gradpath.live.via import Target, ViaPlan


@dataclass
class Job:
    script: str  # absolute path
    text: str
    display: str
    report: object = None  # the FileReport of the script when it was analysed (its own findings run)
    targets: dict = field(default_factory=dict)  # module path -> (report, [findings])
    why: dict = field(default_factory=dict)  # (module path, finding id) -> why this script


@dataclass
class Outcome:
    verdicts: dict = field(default_factory=dict)  # (abs path, finding id) -> Verdict
    runs: list = field(default_factory=list)  # (job, run dict, LiveReport)
    not_reached_by: dict = field(default_factory=dict)  # (abs path, finding id) -> [script displays]


def display_of(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class Planner:
    def __init__(self, reports: list, named: set[str], display=None):
        self.reports = reports
        self.display = display or display_of  # how a script not among the reports is named
        self.named = named  # realpaths of the files named on the command line
        self.graphs: dict[int, reach.ImportGraph] = {}
        self.texts = {os.path.abspath(str(r.path)): r.text for r in reports}
        self.picks: dict[tuple, list] = {}  # (path, finding id) -> [Pick]
        self.no_script: dict[tuple, str] = {}  # (path, finding id) -> reason
        self.direct: list = []  # reports run as themselves

    def text_of(self, path: str) -> str | None:
        path = os.path.abspath(path)
        if path not in self.texts:
            self.texts[path] = reach._read(path)
        return self.texts[path]

    def _graph(self, rep):
        project = getattr(getattr(rep, "resolver", None), "project", None)
        if project is None:
            return None
        g = self.graphs.get(id(project))
        if g is None:
            g = self.graphs[id(project)] = reach.graph_of(project)
        return g

    def plan(self) -> list[Job]:
        """The first round: every script's own findings, and each module finding on its first pick."""
        order: list[str] = []
        jobs: dict[str, Job] = {}
        pending: list[tuple] = []
        for rep in self.reports:
            path = os.path.abspath(str(rep.path))
            findings = list(rep.result.findings)
            named = os.path.realpath(path) in self.named
            if reach.is_runnable(path, rep.text) or (named and not findings) or \
                    any(f.code.startswith("GP0") for f in findings):
                if findings or named:
                    jobs[path] = Job(path, rep.text, rep.display, report=rep)
                    order.append(path)
                continue
            graph = self._graph(rep)
            model_only = []
            for f in findings:
                picks = reach.scripts_for(graph, path, f, self.text_of) if graph is not None else []
                key = (path, f.id)
                if picks:
                    self.picks[key] = picks
                    pending.append((rep, f, picks[0]))
                else:
                    root = graph.project.root if graph is not None else os.path.dirname(path)
                    self.no_script[key] = reach.no_script_reason(path, root)
                    if f.code in V.MODEL_ONLY_CODES:
                        model_only.append(f)
            if model_only:  # GP1 findings: the model-only mode can still build the module's classes
                jobs[path] = Job(path, rep.text, rep.display, report=rep)
                order.append(path)
        for rep, f, pick in pending:
            job = self._job_for(pick.path, jobs, order)
            self._add(job, rep, f, pick)
        return [jobs[p] for p in order]

    def _job_for(self, script: str, jobs: dict, order: list) -> Job:
        job = jobs.get(script)
        if job is None:
            job = jobs[script] = Job(script, self.text_of(script) or "", self.display(script))
            order.append(script)
        return job

    @staticmethod
    def _add(job: Job, rep, f, pick) -> None:
        path = os.path.abspath(str(rep.path))
        entry = job.targets.setdefault(path, (rep, []))
        entry[1].append(f)
        job.why[(path, f.id)] = pick.why

    def next_round(self, outcome: Outcome, tried: dict) -> list[Job]:
        """Jobs for the module findings that no script tried so far reached, on their next pick."""
        jobs: dict[str, Job] = {}
        order: list[str] = []
        by_path = {os.path.abspath(str(r.path)): r for r in self.reports}
        for key, picks in self.picks.items():
            v = outcome.verdicts.get(key)
            if v is None or v.data.get("reached") is not False or v.data.get("run_status") != "ok":
                continue  # reached, or the script stopped early (a missing package, data): no other script
            done = tried.setdefault(key, [picks[0].path])
            nxt = next((p for p in picks if p.path not in done), None)
            if nxt is None:
                continue
            done.append(nxt.path)
            rep = by_path[key[0]]
            f = next(x for x in rep.result.findings if x.id == key[1])
            job = self._job_for(nxt.path, jobs, order)
            self._add(job, rep, f, nxt)
        return [jobs[p] for p in order]

    def sys_path(self, job: Job) -> list[str]:
        """The folders the modules are named from (a src/ layout imported as if installed, a script in
        research/ importing `research.vision.heads` as if run from the project's folder), the
        project's folder last. The worker puts them after the installed packages."""
        out = []
        for path, (rep, _fs) in job.targets.items():
            project = getattr(getattr(rep, "resolver", None), "project", None)
            entry = project.index.modules.get(path) if project is not None else None
            roots = list(entry.roots) if entry is not None else []
            if project is not None:
                roots.append(project.root)
            for r in roots:
                if r != os.path.dirname(job.script) and r not in out:
                    out.append(r)
        return out


def run_job(svc, planner: Planner, job: Job, timeout: float, outcome: Outcome, own: bool = True):
    targets = [Target(p, rep.text, fs, rep.display) for p, (rep, fs) in job.targets.items()]
    plan = ViaPlan(job.script, targets, job.display, why=dict(job.why), sys_path=planner.sys_path(job)) \
        if targets else None
    findings = list(job.report.result.findings) if (own and job.report is not None) else []
    live = svc.confirm(job.script, job.text, findings, timeout_s=timeout, via=plan)
    path = os.path.abspath(job.script)
    for f in findings:
        v = live.verdicts.get(f.id)
        key = (path, f.id)
        if key in planner.no_script and v is not None and v.verdict == V.NOT_RUN:
            v = V.Verdict(V.NOT_RUN, "none", planner.no_script[key], {})
        if v is not None:
            outcome.verdicts[key] = v
    for key, v in live.via.items():
        prev = outcome.verdicts.get(key)
        if prev is not None and prev.verdict != V.NOT_RUN:
            continue
        if prev is not None and prev.data.get("script"):
            # a later script: the first one ran to the end without reaching the line
            tried = prev.data.get("tried") or [prev.data["script"]]
            if v.verdict == V.NOT_RUN and not v.data.get("reached"):
                prev.data["tried"] = tried + [v.data.get("script")]
                prev.evidence += f" (also tried {v.data.get('script')}: {_without_ran(v.evidence)})"
                continue  # the best pick's verdict stays
            v.data["tried"] = tried
            v.evidence += "".join(f" (first tried {t}: line {key_line(key)} never ran)" for t in tried)
        outcome.verdicts[key] = v
    run = dict(live.run, path=job.display)
    if targets:
        run["for"] = [t.display for t in targets]
    if not live.via and targets and "script" not in live.run:  # the script did not run (a syntax error)
        for t in targets:
            for f in t.findings:
                outcome.verdicts.setdefault((t.path, f.id), V.Verdict(
                    V.NOT_RUN, "none", f"{job.display} has a syntax error; nothing can run", {}))
    outcome.runs.append((job, run, live))


def _without_ran(evidence: str) -> str:
    return evidence.split(": ", 1)[1] if evidence.startswith("ran ") and ": " in evidence else evidence


def key_line(key: tuple) -> str:
    """The line of a finding id `GP304:13:15`."""
    parts = str(key[1]).split(":")
    return parts[1] if len(parts) > 1 else "?"


def confirm_reports(svc, reports: list, named: set[str], timeout: float, display=None) -> Outcome:
    planner = Planner(reports, named, display)
    outcome = Outcome()
    jobs = planner.plan()
    for key, reason in planner.no_script.items():
        outcome.verdicts.setdefault(key, V.Verdict(V.NOT_RUN, "none", reason, {}))
    for job in jobs:
        run_job(svc, planner, job, timeout, outcome)
    tried: dict = {}
    for _ in range(reach.MAX_SCRIPTS - 1):
        more = planner.next_round(outcome, tried)
        if not more:
            break
        for job in more:
            run_job(svc, planner, job, timeout, outcome, own=False)
    return outcome


# -- the editor: the live step for one open document ---------------------------------------------------
def confirm_document(svc, project, path: str, text: str, findings: list, timeout: float):
    """The editor's live command on a module (`models/net.py`): the same selection as the CLI. Returns
    a LiveReport: verdicts keyed by finding id, `run` the first script's run (with "for" and
    "scripts", every script run) or, when no script reaches the module, a run that says so."""
    from types import SimpleNamespace

    from gradpath.live.service import LiveReport
    path = os.path.abspath(path)

    def display(p: str) -> str:  # relative to the project's folder (the server's cwd means nothing)
        rel = os.path.relpath(p, project.root)
        return p if rel.startswith("..") else rel

    rep = SimpleNamespace(path=path, text=text, display=display(path),
                          result=SimpleNamespace(findings=list(findings)),
                          resolver=SimpleNamespace(project=project))
    outcome = confirm_reports(svc, [rep], set(), timeout, display)
    verdicts = {fid: v for (p, fid), v in outcome.verdicts.items() if p == path}
    if outcome.runs:
        run = dict(outcome.runs[0][1])
        run["scripts"] = [r.get("path") for _j, r, _l in outcome.runs]
    else:
        reasons = sorted({v.evidence for v in verdicts.values()})
        run = {"path": path, "mode": "none", "status": "not-run", "scripts": [],
               "error": {"message": reasons[0] if reasons else "no script reaches this module"}}
    return LiveReport(verdicts=verdicts, run=run)


def runs_via_scripts(path: str | None, text: str, project) -> bool:
    """Does the live command on this document run other scripts (it is a module of a project)?"""
    return bool(path) and project is not None and os.path.abspath(path) in project.index.modules and \
        not reach.is_runnable(path, text)
