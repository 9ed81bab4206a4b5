"""Small helpers the test modules share (``from tests.helpers import ...``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(pred: Callable[[], object], timeout: float, step: float = 0.02) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; returns its last value as a bool."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
