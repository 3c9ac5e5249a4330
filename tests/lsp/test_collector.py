"""When `gradpath serve` collects its garbage (lsp/collector.py): in the pauses after a publish, not
while requests keep coming; at once when too much piled up; after a close whatever happens."""
import asyncio
import gc
import weakref

import pytest

from gradpath.lsp import collector as collector_mod
from gradpath.lsp.collector import Collector


@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    was = gc.isenabled()
    yield lp
    lp.close()
    if was:
        gc.enable()


class _Node:
    pass


def _cycles(n):
    for _ in range(n):
        a = []
        a.append(a)


def _garbage_cycle() -> weakref.ref:
    """An object in a reference cycle nothing else holds: only the cyclic collector frees it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def _run(loop, seconds):
    loop.run_until_complete(asyncio.sleep(seconds))


def test_a_pause_after_a_publish_collects_and_a_request_in_it_does_not(loop):
    c = Collector()
    c.published()  # not started (an in-process server): nothing planned, Python collects
    assert c._young is None and gc.isenabled()
    c.start(loop)
    assert not gc.isenabled()
    left = _garbage_cycle()
    c.published()
    c.busy()  # the next keystroke came before the pause
    _run(loop, collector_mod.YOUNG_AFTER_S * 3)
    assert c.collections == [0, 0, 0] and left() is not None
    c.published()
    _run(loop, collector_mod.YOUNG_AFTER_S * 3)
    assert c.collections[0] + c.collections[1] == 1
    assert left() is None  # the cycle went with it


def test_piled_up_garbage_is_collected_right_after_the_publish(loop, monkeypatch):
    monkeypatch.setattr(collector_mod, "PILED_UP", 100)
    c = Collector()
    c.start(loop)
    gc.collect()
    left = _garbage_cycle()
    _cycles(500)
    c.published()  # no pause needed
    assert sum(c.collections[:2]) == 1 and left() is None


def test_a_close_gets_a_full_collection_even_without_a_pause(loop, monkeypatch):
    monkeypatch.setattr(collector_mod, "OLD_AFTER_S", 0.05)
    c = Collector()
    c.start(loop)
    c.closed()
    for _ in range(8):  # requests keep coming for 120 ms, each before a pause would begin
        c.busy()
        c.published()
        _run(loop, 0.015)
    assert c.collections[2] == 1  # due 50 ms after the close, and not put off by them
    _run(loop, 0.1)
    c.published()
    _run(loop, 0.1)  # a pause with nothing closed and the old generations not due: no full one
    assert c.collections[2] == 1
