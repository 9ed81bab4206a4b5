"""What a stage must hand on for the policy to trust it. A stage that returns nonsense (None, a NaN
score, a probability of 1.3) is a NO-READ with its fail-safe, never a decision by accident: every
comparison with NaN is false, so ``nan >= threshold`` would pass the part.

Each check returns None when the value is usable, else a sentence that says what is wrong.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from edge_inspector.envelope import Box, MapSummary, Regions, Verdict


def _number(x: Any) -> float | None:
    """``x`` as a finite float, or None (bools and strings are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, Real):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _probability(name: str, x: Any) -> str | None:
    v = _number(x)
    if v is None or not 0.0 <= v <= 1.0:
        return f"{name} is {x!r}, not a finite probability in [0, 1]"
    return None


def verdict_problem(verdict: Any) -> str | None:
    """Why ``verdict`` cannot be decided on (None: it can)."""
    if not isinstance(verdict, Verdict):
        return f"the judge returned {type(verdict).__name__}, not a Verdict"
    return (_probability("P(defective)", verdict.p_defective)
            or _probability("confidence", verdict.confidence))


def regions_problem(regions: Any) -> str | None:
    """Why ``regions`` cannot be handed to the judge (None: it can)."""
    if not isinstance(regions, Regions):
        return f"the regions stage returned {type(regions).__name__}, not Regions"
    if _number(regions.score) is None:
        return f"the regions score is {regions.score!r}, not a finite number"
    if not isinstance(regions.boxes, tuple | list) or not all(isinstance(b, Box) for b in regions.boxes):
        return "the regions stage returned boxes that are not Box values"
    for b in regions.boxes:
        if _number(b.score) is None:
            return f"a box's score is {b.score!r}, not a finite number"
    s = regions.summary
    if not isinstance(s, MapSummary):
        return f"the map summary is {type(s).__name__}, not a MapSummary"
    for name in ("max", "mean", "p99"):
        if _number(getattr(s, name)) is None:
            return f"the map summary's {name} is {getattr(s, name)!r}, not a finite number"
    return None
