"""Live worker, child side: observe project modules that the user's script imports.

A finding in `models/net.py` is confirmed by running `train.py`; the probes and line marks the
analysis wants in `net.py` are put there when the script imports it. An import hook (first on
`sys.meta_path`) lets the usual finders locate each module, and when the file found is one of the
request's `modules`, loads it from the request's text through the same rewrite as the script
(probes around flagged sub-expressions, `__gp_mark__(line)` before watched statements, training
loops cut short). Line marks and loop counts of each module are kept apart from the script's (a
module's line 13 is not the script's line 13). Events (backward, step...) carry the lines of the
module frames on their stack, and an exception the frames it passed through in each module.

Standard library only (like worker.py; imported by child_run.py as `_gradpath_live.modhook`).

    hook = ModuleHook(req["modules"], obs, rewrite)   # rewrite: script_rewrite.rewrite
    hook.install()
    ... run the script ...
    result["module_obs"] = hook.summary(exc)           # {path: {"lines", "loops", "events", ...}}
"""
from __future__ import annotations

import importlib.abc
import os
import sys
import traceback

MAX_EVENTS = 400


class ModuleHook:
    def __init__(self, modules: list[dict], obs, rewrite):
        self.obs = obs
        self.rewrite = rewrite
        self.by_path: dict[str, dict] = {}
        for i, m in enumerate(modules or []):
            try:
                rp = os.path.realpath(m["path"])
            except (KeyError, TypeError):
                continue
            self.by_path[rp] = {"path": m["path"], "real": rp, "tag": f"m{i}", "source": m.get("source"),
                                "probes": m.get("probes") or [], "watch": m.get("watch") or [],
                                "lines": {}, "loaded": False, "names": []}
        self.files = {t["real"] for t in self.by_path.values()} | {t["path"] for t in self.by_path.values()}
        self.alias: dict[str, dict] = {}  # the file name a module was compiled under -> its target
        # the last part of the dotted names they can be imported under (other imports pass untouched)
        self.stems = set()
        for t in self.by_path.values():
            d, base = os.path.split(t["path"])
            self.stems.add(os.path.basename(d) if base == "__init__.py" else base[:-3])

    # -- installing ---------------------------------------------------------------------------------
    def install(self) -> None:
        if not self.by_path:
            return
        sys.meta_path.insert(0, _Finder(self))
        orig = self.obs.event
        hook = self

        def event(kind, **data):
            n = len(hook.obs.events)
            orig(kind, **data)
            if len(hook.obs.events) > n:
                hook.obs.events[-1]["mstack"] = hook.stack()

        self.obs.event = event

    def target(self, origin: str | None) -> dict | None:
        if not origin:
            return None
        return self.alias.get(origin) or self.by_path.get(origin) or self.by_path.get(os.path.realpath(origin))

    def stack(self) -> dict:
        """{module path: lines of its frames on the current stack, outermost first}"""
        out: dict[str, list[int]] = {}
        f = sys._getframe(2)
        while f is not None:
            fn = f.f_code.co_filename
            if fn in self.files:
                t = self.target(fn)
                if t is not None:
                    out.setdefault(t["path"], []).insert(0, f.f_lineno)
            f = f.f_back
        return out

    # -- loading ------------------------------------------------------------------------------------
    def exec_target(self, t: dict, module, fallback) -> None:
        src = t.get("source")
        if src is None:
            with open(t["real"], encoding="utf-8") as fh:
                src = fh.read()
        origin = getattr(module, "__file__", None) or t["path"]
        self.files.add(origin)
        self.alias[origin] = t
        try:
            code, placed, sites = self.rewrite(src, origin, t["probes"], cut_loops=True, watch=t["watch"])
        except Exception as exc:  # our rewrite failed: load the module as it is
            t["rewrite_error"] = repr(exc)
            fallback.exec_module(module)
            t["loaded"] = True
            return
        t["placed"] = {k: list(v) for k, v in placed.items()}
        t["sites"] = {k: list(v) for k, v in sites.items() if v}
        ns = module.__dict__
        lines = t["lines"]
        obs = self.obs
        tag = t["tag"]

        def mark(line):
            lines[line] = lines.get(line, 0) + 1

        ns["__gp_mark__"] = mark
        ns["__gp_iter__"] = lambda it, line: obs.iter_cut(it, f"{tag}:{line}")
        ns["__gp_while__"] = lambda line: obs.while_check(f"{tag}:{line}")
        ns["__gp_wreset__"] = lambda line: obs.while_reset(f"{tag}:{line}")
        t["loaded"] = True
        t["names"].append(module.__name__)
        exec(code, ns)

    # -- the report ---------------------------------------------------------------------------------
    def frames(self, exc: BaseException | None) -> dict:
        if exc is None:
            return {}
        out: dict[str, list[int]] = {}
        try:
            for fr in traceback.extract_tb(exc.__traceback__):
                t = self.target(fr.filename) if fr.filename in self.files else None
                if t is not None:
                    out.setdefault(t["path"], []).append(fr.lineno)
        except Exception:
            pass
        return {k: v[-10:] for k, v in out.items()}

    def summary(self, exc: BaseException | None = None) -> dict:
        frames = self.frames(exc)
        out = {}
        for t in self.by_path.values():
            tag = t["tag"] + ":"
            loops = {k[len(tag):]: v for k, v in self.obs.loops.items() if isinstance(k, str) and k.startswith(tag)}
            out[t["path"]] = {"loaded": t["loaded"], "imported_as": t["names"][:3],
                              "lines": {str(k): v for k, v in t["lines"].items()},
                              "loops": loops, "probes_placed": t.get("placed", {}), "probe_sites": t.get("sites", {}),
                              "exception_lines": frames.get(t["path"], []),
                              "rewrite_error": t.get("rewrite_error")}
        return out


class _Finder(importlib.abc.MetaPathFinder):
    """Asks the other finders, and takes over the loading of the request's modules."""

    def __init__(self, hook: ModuleHook):
        self.hook = hook

    def find_spec(self, fullname, path, target=None):
        if fullname.rpartition(".")[2] not in self.hook.stems:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self:
                continue
            fs = getattr(finder, "find_spec", None)
            if fs is None:
                continue
            try:
                spec = fs(fullname, path, target)
            except Exception:
                spec = None
            if spec is not None:
                break
        if spec is None or not spec.has_location:
            return None
        t = self.hook.target(spec.origin)
        if t is None or spec.loader is None:
            return None
        spec.loader = _Loader(self.hook, t, spec.loader)
        return spec

    def invalidate_caches(self):
        pass


class _Loader(importlib.abc.Loader):
    def __init__(self, hook: ModuleHook, t: dict, fallback):
        self.hook = hook
        self.t = t
        self.fallback = fallback

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        self.hook.exec_target(self.t, module, self.fallback)
