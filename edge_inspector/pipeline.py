"""One part through regions -> judge -> policy. Shared by the daemon and the ``inspect`` command.

Every path ends in a decision: an unreadable frame, a failing regions stage, a judge that raises,
hangs or runs past the deadline each become a NO-READ with its reason.
"""

from __future__ import annotations

import queue
import threading
import time

import structlog

from edge_inspector.envelope import Frame, Inspection, Reason, Regions, Verdict
from edge_inspector.errors import JudgeTimeout, RegistrationFailed
from edge_inspector.judge.base import Judge
from edge_inspector.policy import Policy
from edge_inspector.regions.base import RegionFinder

log = structlog.get_logger(__name__)


class GuardedJudge:
    """Runs a judge on its own thread and waits at most until the part's deadline (plus a grace).

    A judge that hangs cannot stall the line: the part is a timeout, and while the judge is still
    stuck every further part is a timeout at once (``busy``), until it returns. The thread is a
    daemon thread, so a stuck judge cannot keep the process from exiting either.
    """

    def __init__(self, judge: Judge, grace_s: float = 0.05) -> None:
        self.judge = judge
        self.grace_s = grace_s
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._busy_since: float | None = None
        self._busy_part: str | None = None
        self._thread = threading.Thread(target=self._loop, name="judge", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            frame, regions, box = job
            try:
                box["verdict"] = self.judge.judge(frame, regions, frame.deadline_mono)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            finally:
                self._busy_since = None
                box["done"].set()

    @property
    def busy_for_s(self) -> float:
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def __call__(self, frame: Frame, regions: Regions) -> Verdict:
        if self._busy_since is not None:
            raise JudgeTimeout(f"the judge is still busy with part {self._busy_part} "
                               f"({self.busy_for_s:.1f} s)")
        box: dict = {"done": threading.Event()}
        self._busy_since, self._busy_part = time.monotonic(), frame.part_id
        self._jobs.put((frame, regions, box))
        remaining = frame.remaining_s()
        timeout = None if remaining == float("inf") else max(0.0, remaining) + self.grace_s
        if not box["done"].wait(timeout):
            raise JudgeTimeout("the judge did not answer before the deadline")
        if "error" in box:
            raise box["error"]
        return box["verdict"]

    def close(self) -> None:
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        self.judge.close()


class Inspector:
    """regions -> judge -> policy for one frame, with the time of each stage."""

    def __init__(self, regions: RegionFinder, judge: Judge, policy: Policy, grace_s: float = 0.05) -> None:
        self.regions = regions
        self.judge = GuardedJudge(judge, grace_s)
        self.policy = policy

    @property
    def model_hash(self) -> str:
        return f"{self.regions.fingerprint}+{self.judge.judge.fingerprint}"

    def inspect(self, frame: Frame, started: float | None = None) -> Inspection:
        t0 = time.monotonic() if started is None else started
        timings = {"queue": (t0 - frame.trigger_mono) * 1000}
        if "capture_ms" in frame.meta:
            timings["capture"] = float(frame.meta["capture_ms"])

        def done(inspection: Inspection) -> Inspection:
            inspection.decision.timings_ms["total"] = (time.monotonic() - frame.trigger_mono) * 1000
            return inspection

        if not frame.readable:
            return done(Inspection(frame, self.policy.no_read(frame, frame.error_reason,
                                                              frame.error or "no image", timings)))
        try:
            regions = self.regions.find(frame)
        except RegistrationFailed as exc:
            log.warning("registration_failed", part_id=frame.part_id, error=str(exc), **exc.figures)
            return done(Inspection(frame, self.policy.no_read(
                frame, Reason.REGISTRATION_FAILED, str(exc), timings)))
        except Exception as exc:  # noqa: BLE001 - any failure is a NO-READ, never a crash
            log.warning("regions_failed", part_id=frame.part_id, error=str(exc))
            return done(Inspection(frame, self.policy.no_read(
                frame, Reason.REGIONS_ERROR, f"{type(exc).__name__}: {exc}", timings)))
        t1 = time.monotonic()
        timings["regions"] = (t1 - t0) * 1000
        try:
            verdict = self.judge(frame, regions)
        except JudgeTimeout as exc:
            timings["judge"] = (time.monotonic() - t1) * 1000
            return done(Inspection(frame, self.policy.no_read(frame, Reason.TIMEOUT, str(exc), timings),
                                   regions))
        except Exception as exc:  # noqa: BLE001
            timings["judge"] = (time.monotonic() - t1) * 1000
            log.warning("judge_failed", part_id=frame.part_id, error=f"{type(exc).__name__}: {exc}")
            return done(Inspection(frame, self.policy.no_read(
                frame, Reason.JUDGE_ERROR, f"{type(exc).__name__}: {exc}", timings), regions))
        t2 = time.monotonic()
        timings["judge"] = (t2 - t1) * 1000
        decision = self.policy.decide(frame, verdict, timings)
        timings["policy"] = (time.monotonic() - t2) * 1000
        return done(Inspection(frame, decision, regions, verdict))

    def close(self) -> None:
        self.judge.close()
