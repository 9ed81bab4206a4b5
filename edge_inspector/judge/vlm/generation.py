"""What one engine call returns, and the deadline guard it runs under (no torch here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_inspector.errors import JudgeTimeout


@dataclass(frozen=True, slots=True)
class Generation:
    texts: tuple[str, ...]  # the k sampled answers, the prompt's pre-filled answer start included
    p_logit: float  # P(defective) from the decision token: P(yes) / (P(yes) + P(no))
    decision_mass: float  # P(yes) + P(no): how firmly the model keeps to the answer form
    prefill_tokens: int  # tokens run through the model for this part's prompt (not the cached prefix)
    prefix_hit: bool  # the prefix's key/value cache was reused
    timings_ms: dict[str, float] = field(default_factory=dict)  # encode, prefix, prefill, decode


class DeadlineGuard:
    """Stops work that would end after ``deadline_mono - margin_s``.

    Before each step the engine calls :meth:`check` with the step's expected cost (from the costs
    measured so far); the guard raises :class:`JudgeTimeout` when the step could not finish in time,
    so the station never waits on an answer that would be late.
    """

    def __init__(self, deadline_mono: float, margin_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline_mono - margin_s
        self.clock = clock

    def remaining_s(self) -> float:
        return self.deadline - self.clock()

    def check(self, what: str, expected_s: float = 0.0) -> None:
        left = self.remaining_s()
        if left <= expected_s:
            raise JudgeTimeout(f"{what} stopped: {max(left, 0.0) * 1e3:.1f} ms left before the part's "
                               f"deadline, {expected_s * 1e3:.1f} ms expected")


class CostModel:
    """Running estimates of step costs (exponential moving averages), per kind of step."""

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self._s: dict[str, float] = {}

    def expect(self, kind: str, units: float = 1.0) -> float:
        return self._s.get(kind, 0.0) * units

    def observe(self, kind: str, seconds: float, units: float = 1.0) -> None:
        per = seconds / max(units, 1e-9)
        old = self._s.get(kind)
        self._s[kind] = per if old is None else (1 - self.alpha) * old + self.alpha * per
