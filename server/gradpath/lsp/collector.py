"""When the server collects its cyclic garbage: in the pauses between keystrokes, not in them.

An analysis builds tens of thousands of objects, and what it leaves in cycles (the trees, facts and
dataflows of versions no longer kept, each analysis's context) is freed only by the cyclic garbage
collector. The engine keeps the collector off while an analysis runs and collects the youngest
generation when it ends (engine._gc_release): inside that keystroke's latency, 2-17 ms after each
analysis of the large real files, and 30-140 ms every tenth time, when the middle generation comes
due (benchmarks/README.md, session 11).

`gradpath serve` turns the automatic collector off for good (`start`) and collects here instead:
- the youngest generations YOUNG_AFTER_S after a publish when no new request came meanwhile (the
  middle one every MIDDLE_EVERY times, as Python's own thresholds would);
- all of them after a pause of OLD_AFTER_S, when the middle generation was collected OLD_EVERY
  times since (as Python's own thresholds would, about) or a document was closed (what its
  analyses left: without it the server's memory grew by ~90 kB a close, without end);
- at once after a publish, and every CHECK_EVERY_S whatever happens, when more than PILED_UP new
  objects are waiting (a client that sends the next edit the moment the last one is published
  leaves no pause; the background index and jedi threads allocate too), and all of them every
  CHECK_EVERY_S once the middle generation was collected 2 * OLD_EVERY times without a pause.
A request that arrives cancels the collections planned for the pause, except the one a close asked
for. In-process servers (tests) never call `start`: the collector stays as Python runs it and this
class does nothing (the engine's own collection after each analysis then stays too: it collects only
when it found the collector on).
"""
from __future__ import annotations

import asyncio
import gc

YOUNG_AFTER_S = 0.02
OLD_AFTER_S = 1.0
CHECK_EVERY_S = 1.0
MIDDLE_EVERY = 10
OLD_EVERY = 10
PILED_UP = 100_000


class Collector:
    def __init__(self):
        self.active = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, once started
        self.collections = [0, 0, 0]  # how many of each generation (logs, tests)
        self._young: asyncio.TimerHandle | None = None
        self._old: asyncio.TimerHandle | None = None
        self._closed = False  # a document was closed since the last full collection

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The automatic collector off; collections from here on (the server's event loop)."""
        self.active, self._loop = True, loop
        gc.disable()
        loop.call_later(CHECK_EVERY_S, self._check)

    def busy(self) -> None:
        """A request arrived: no collection in the pause that was expected (but the one a close
        asked for comes OLD_AFTER_S after it whatever happens: opening and closing files leaves
        no pause either)."""
        if self._young is not None:
            self._young.cancel()
            self._young = None
        if self._old is not None and not self._closed:
            self._old.cancel()
            self._old = None

    def published(self) -> None:
        if not self.active:
            return
        loop = self._loop
        self.busy()
        if gc.get_count()[0] > PILED_UP:
            self._collect_young()
        else:
            self._young = loop.call_later(YOUNG_AFTER_S, self._collect_young)
        if self._old is None:  # (else the one a close asked for is still to come)
            self._old = loop.call_later(OLD_AFTER_S, self._collect_old)

    def closed(self) -> None:
        """A document was closed: what its analyses left goes in the next pause."""
        if not self.active:
            return
        self._closed = True
        if self._old is None:
            self._old = self._loop.call_later(OLD_AFTER_S, self._collect_old)

    def _collect_young(self) -> None:
        self._young = None
        gen = 1 if gc.get_count()[1] >= MIDDLE_EVERY else 0
        gc.collect(gen)
        self.collections[gen] += 1

    def _collect_old(self) -> None:
        self._old = None
        if self._closed or gc.get_count()[2] >= OLD_EVERY:
            self._closed = False
            gc.collect()
            self.collections[2] += 1
        elif gc.get_count()[0]:
            self._collect_young()

    def _check(self) -> None:
        if gc.get_count()[2] >= 2 * OLD_EVERY:  # typing for minutes without a pause
            gc.collect()
            self.collections[2] += 1
        elif gc.get_count()[0] > PILED_UP:
            self._collect_young()
        self._loop.call_later(CHECK_EVERY_S, self._check)
