"""Module summaries computed in another process, for `Project.build(summarize_many=...)`.

The editor's index summarises every module of a folder when it opens (seconds of CPU on a large
project). In the server's own process that work holds the interpreter lock against the analysis
of the file being typed in (one lock for all threads: each keystroke's analysis then takes up to
twice as long). In a child process it uses another core, and the server's index thread only waits.

`ProcessSummarizer()(todo)` takes [(path, text)] and yields (path, summary) in the same order.
`gradpath check` uses it too, with a child per core, for a folder whose summaries are not cached. A
few modules are summarised here (starting a process costs more); a child that cannot start or
fails is replaced by summarising here, so the summaries are always the same as `summarize(text)`'s.
Setting `stop` (a threading.Event) makes the generator raise `IndexStopped` (the server exits).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout

from gradpath.analysis.project.summaries import summarize

log = logging.getLogger("gradpath.project")

BATCH = 8  # modules per message to the child
MIN_MODULES = 16  # fewer than this: summarised here
POLL_S = 0.2  # how often a wait for the child looks at `stop`


class IndexStopped(Exception):
    """The index build was stopped (`stop` was set)."""


def summarize_batch(texts: list[str]) -> list[dict | None]:
    """Runs in the child."""
    return [summarize(t) for t in texts]


def _lower_priority() -> None:
    """The child gives way to the editor's own work when both want the same core."""
    try:
        os.nice(5)
    except (AttributeError, OSError):
        pass


class ProcessSummarizer:
    """`workers` child processes (the editor: one, niced, beside the user's typing; `gradpath
    check`: one per core it uses for the analyses)."""

    def __init__(self, min_modules: int = MIN_MODULES, stop: threading.Event | None = None,
                 workers: int = 1, nice: bool = True):
        self.min_modules = min_modules
        self.workers = max(1, workers)
        self.nice = nice
        self.stop = stop or threading.Event()
        self.in_child = 0  # modules summarised by the child
        self.here = 0  # modules summarised in this process

    def _check(self) -> None:
        if self.stop.is_set():
            raise IndexStopped()

    def _here(self, chunk):
        for path, text in chunk:
            self._check()
            self.here += 1
            yield path, summarize(text)

    def __call__(self, todo: list[tuple[str, str]]):
        if len(todo) < self.min_modules:
            yield from self._here(todo)
            return
        try:
            ex = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_lower_priority if self.nice else None)
        except Exception as exc:  # no process support here (a sandbox): summarise in this process
            log.info("summaries in this process: cannot start a child (%s)", exc)
            yield from self._here(todo)
            return
        chunks = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
        try:
            futures = [ex.submit(summarize_batch, [t for _, t in c]) for c in chunks]
            for chunk, fut in zip(chunks, futures):
                while True:
                    self._check()
                    try:
                        got = fut.result(timeout=POLL_S)
                        break
                    except FutureTimeout:
                        continue
                    except Exception as exc:  # the child failed or died: these modules here
                        log.info("summaries in this process for %d modules: the child failed (%s)",
                                 len(chunk), exc)
                        got = None
                        break
                if got is None or len(got) != len(chunk):
                    yield from self._here(chunk)
                    continue
                self.in_child += len(chunk)
                for (path, _text), summary in zip(chunk, got):
                    yield path, summary
        finally:
            ex.shutdown(wait=False, cancel_futures=True)
