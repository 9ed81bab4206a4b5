"""A TEST FACILITY: a judge wrapper that stalls or fails on demand, for ``tools/soak.py``.

Enabled only by the explicit config key ``pipeline.test_judge_faults`` (a path; never set on a
station). The wrapped judge runs as usual while the file is absent or says ``{"mode": "ok"}``; the
file is read at every call, so a soak running the real daemon as a subprocess turns
faults on and off by writing it:

- ``{"mode": "stall", "stall_s": 3}``: every call sleeps ``stall_s`` before judging (a judge server
  that stopped answering: the part times out, later parts find the judge busy);
- ``{"mode": "fail"}``: every call raises :class:`JudgeError` (a failing judge);
- ``{"mode": "nan"}``: every call returns P(defective) = NaN (a judge that answers nonsense).

Every part still gets exactly one decision: the pipeline's guard turns each of these into a NO-READ
(timeout, judge_error) with the fail-safe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import structlog

from edge_inspector.envelope import Frame, Regions, Verdict
from edge_inspector.errors import JudgeError
from edge_inspector.judge.base import Judge

log = structlog.get_logger(__name__)

MODES = ("ok", "stall", "fail", "nan")


class FaultInjectingJudge(Judge):
    def __init__(self, inner: Judge, path: Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.fingerprint = inner.fingerprint
        self._mode: dict = {"mode": "ok"}
        log.warning("judge_fault_injection_enabled", path=str(self.path),
                    detail="pipeline.test_judge_faults is a test facility (tools/soak.py): never set it "
                    "on a station")

    @property
    def recipe_version(self) -> str | None:
        return self.inner.recipe_version

    def mode(self) -> dict:
        """The file's mode, read at every call (a test facility: a few bytes; a changed mtime can
        hide within the file system's timestamp granularity)."""
        try:
            got = json.loads(self.path.read_text())
        except FileNotFoundError:
            got = {"mode": "ok"}
        except (OSError, ValueError):
            got = {"mode": "ok"}
        mode = got if isinstance(got, dict) and got.get("mode") in MODES else {"mode": "ok"}
        if mode != self._mode:
            self._mode = mode
            log.warning("judge_fault_mode", **mode)
        return mode

    def judge(self, frame: Frame, regions: Regions, deadline_mono: float) -> Verdict:
        mode = self.mode()
        kind = mode.get("mode")
        if kind == "stall":
            time.sleep(float(mode.get("stall_s", 3.0)))
        elif kind == "fail":
            raise JudgeError("injected judge failure (pipeline.test_judge_faults)")
        verdict = self.inner.judge(frame, regions, deadline_mono)
        if kind == "nan":
            from dataclasses import replace

            return replace(verdict, p_defective=float("nan"), confidence=float("nan"))
        return verdict

    def close(self) -> None:
        self.inner.close()
