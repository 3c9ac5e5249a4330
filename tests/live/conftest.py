"""Shared pieces for the live-step tests: one warm LiveService for the whole session (real torch)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def live():
    from gradpath.live.service import LiveService
    svc = LiveService(timeout_s=10.0, memory_mb=1024)
    svc.start()
    assert svc.wait_ready(), "the live worker did not start"
    yield svc
    svc.close()


