from __future__ import annotations

import threading
import time

import pytest


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    """Every service stops its threads (names as the services give them)."""
    yield
    ours = {"systemd-notify", "control", "retention", "reload", "capture", "worker", "fake-bridge", "fake-broker"}
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = {t.name for t in threading.enumerate() if t.is_alive()} & ours
        if not left:
            return
        time.sleep(0.02)
    raise AssertionError(f"threads left running: {left}")
