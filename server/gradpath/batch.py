"""`gradpath check` over projects: the project model for each folder given (for a file: the project
it belongs to, see files.project_root), and the files analysed in parallel processes, the reports
kept in the order of the file list (the output never depends on which worker finished first).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gradpath.files import iter_python_files, project_root

MIN_PARALLEL_FILES = 12
MAX_WORKERS = 8


class ProjectResolver:
    """The CLI's per-root resolver, with the project attached (rules read `resolver.project`)."""

    def __init__(self, inner, project):
        self._inner = inner
        self.project = project

    def enrich(self, ctx) -> None:
        if self._inner is not None:
            self._inner.project = self.project  # the resolver reads it for factories of other modules
            self._inner.enrich(ctx)

    def __getattr__(self, name):
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


def project_roots(paths: list[str]) -> list[str]:
    roots = []
    for p in paths:
        r = str(project_root(p)) if os.path.exists(p) else None
        if r and r not in roots:
            roots.append(r)
    return roots


def root_of(path: Path, roots: list[str]) -> str | None:
    ap = os.path.abspath(path)
    best = None
    for r in roots:
        if (ap == r or ap.startswith(r.rstrip(os.sep) + os.sep)) and (best is None or len(r) > len(best)):
            best = r
    return best


def single_files(paths: list[str]) -> dict[str, list[str]]:
    """Project root -> the files given in it, for the projects the command line names only through
    files (a folder given checks its project whole). Those projects are built lazily: only the
    modules the files' findings can depend on (analysis/project/lazy.py). GRADPATH_LAZY_INDEX=0
    builds them whole (to compare)."""
    if os.environ.get("GRADPATH_LAZY_INDEX", "1") == "0":
        return {}
    files: dict[str, list[str]] = {}
    whole: set[str] = set()
    for p in paths:
        if not os.path.exists(p):
            continue
        r = str(project_root(p))
        if os.path.isdir(p):
            whole.add(r)
        elif p.endswith(".py"):
            files.setdefault(r, []).append(os.path.abspath(p))
        else:
            whole.add(r)  # a notebook: the project as a whole, as before
    return {r: fs for r, fs in files.items() if r not in whole}


def build_projects(roots: list[str], excluded, use_cache: bool = True,
                   targets: dict[str, list[str]] | None = None, use_jedi: bool = False,
                   workers: int = 1) -> dict:
    """root -> Project, its summaries built (from the cache when the texts are known). `excluded`
    (path -> bool) applies the project configuration's `exclude`. `targets` (root -> files): for
    those roots, only what the files need (see single_files). `use_jedi` (--jedi): modules outside
    the project that its imports name, on the interpreter's sys.path (project/external.py, bounded).
    `workers` > 1: the summaries the cache lacks are computed in that many child processes."""
    from gradpath.analysis.project import Project
    from gradpath.analysis.project.pool import ProcessSummarizer
    out = {}
    for r in roots:
        files = [str(f) for f in iter_python_files([r]) if not excluded(f)]
        need = None
        if targets and targets.get(r):
            from gradpath.analysis.project.lazy import build_for_files
            p = out[r] = Project(r, files, use_cache=use_cache)
            need = build_for_files(p, targets[r])
        else:
            many = ProcessSummarizer(workers=workers, nice=False) if workers > 1 else None
            p = out[r] = Project(r, files, use_cache=use_cache).build(summarize_many=many)
        if use_jedi:
            from gradpath.analysis.project.external import add_externals
            if add_externals(p, paths=sorted(need) if need is not None else None):
                p.save_cache() if need is None else p.cache.save(keep=None)
        lk = p.linker()  # linked once here: forked workers inherit the answers
        lk.loss_uses()
        lk.backward_callers()
    return out


# -- parallel analysis -------------------------------------------------------------------------------
_STATE: dict = {}


def _init(projects: dict, use_jedi: bool) -> None:
    _STATE["projects"] = projects
    _STATE["jedi"] = use_jedi


def _resolver_for(cfg_root, proj_root):
    from gradpath import cli
    inner = cli._resolver(cfg_root, _STATE.get("jedi", False))
    project = _STATE.get("projects", {}).get(proj_root)
    return ProjectResolver(inner, project) if project is not None else inner


def _work(job):
    from gradpath import cli
    path, display, opts, cfg_root, proj_root = job
    try:
        rep = cli._analyze_file(path, display, opts, _resolver_for(cfg_root, proj_root))
    except UnicodeDecodeError as exc:
        return "error", f"{path}: cannot read: not valid text ({exc.reason})"
    except OSError as exc:
        return "error", f"{path}: cannot read: {exc.strerror or exc}"
    rep.resolver = None  # not sent back; the caller attaches its own
    return "ok", rep


def workers_for(n_files: int, jobs: int | None) -> int:
    if jobs is not None and jobs > 0:
        return min(jobs, n_files) or 1
    if n_files < MIN_PARALLEL_FILES:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, n_files))


def analyze_jobs(jobs: list[tuple], projects: dict, use_jedi: bool, workers: int, on_done=None):
    """Yield (status, report-or-message) per job, in the order of `jobs`."""
    _init(projects, use_jedi)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            res = _work(job)
            if on_done:
                on_done()
            yield res
        return
    import multiprocessing
    try:
        mp = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - no fork (Windows): spawn pickles the projects
        mp = None
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_init,
                             initargs=(projects, use_jedi)) as pool:
        for res in pool.map(_work, jobs, chunksize=max(1, min(8, len(jobs) // (workers * 4) or 1))):
            if on_done:
                on_done()
            yield res
