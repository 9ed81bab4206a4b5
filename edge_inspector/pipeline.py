"""One part through regions -> judge -> policy. Shared by the daemon and the ``inspect`` command.

Every path ends in a decision: an unreadable frame, a failing regions stage, a judge that raises,
hangs or runs past the deadline each become a NO-READ with its reason. "Fails" means anything a
stage can do: raise any exception, SystemExit and KeyboardInterrupt included (only the user's
Ctrl-C in the main thread, the ``inspect`` command's, goes through), or return something that is
not a usable result (None, a NaN score or probability: ``policy.checks``).
"""

from __future__ import annotations

import queue
import threading
import time

import structlog

from edge_inspector.envelope import Frame, Inspection, Reason, Regions, Verdict
from edge_inspector.errors import JudgeError, JudgeTimeout, RegistrationFailed
from edge_inspector.judge.base import Judge
from edge_inspector.policy import Policy
from edge_inspector.policy.checks import regions_problem, verdict_problem
from edge_inspector.regions.base import RegionFinder

log = structlog.get_logger(__name__)


def _stage_failed(exc: BaseException) -> str:
    """The NO-READ detail for a stage that raised ``exc``. Re-raises the user's Ctrl-C (a
    KeyboardInterrupt in the main thread): a stage's own KeyboardInterrupt elsewhere is a failure."""
    if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        raise exc
    return f"{type(exc).__name__}: {exc}"


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
            err = box["error"]
            if isinstance(err, Exception):
                raise err
            # SystemExit, KeyboardInterrupt... raised by the judge's code on its own thread: a
            # failure of this part, not a request to stop the process
            raise JudgeError(f"the judge raised {type(err).__name__}: {err}") from err
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
            try:
                timings["capture"] = float(frame.meta["capture_ms"])
            except (TypeError, ValueError):
                log.warning("capture_time_ignored", part_id=frame.part_id,
                            capture_ms=repr(frame.meta["capture_ms"]))

        def done(decision, regions: Regions | None = None, verdict: Verdict | None = None) -> Inspection:
            decision.timings_ms["total"] = (time.monotonic() - frame.trigger_mono) * 1000
            return Inspection(frame, decision, regions, verdict)

        def no_read(reason: Reason, detail: str, regions: Regions | None = None) -> Inspection:
            return done(self.policy.no_read(frame, reason, detail, timings), regions)

        if not frame.readable:
            return no_read(frame.error_reason, frame.error or "no image")
        try:
            regions = self.regions.find(frame)
            problem = regions_problem(regions)
        except RegistrationFailed as exc:  # a registration that cannot be trusted: its own reason
            log.warning("registration_failed", part_id=frame.part_id, error=str(exc), **exc.figures)
            return no_read(Reason.REGISTRATION_FAILED, str(exc))
        except BaseException as exc:  # noqa: BLE001 - any failure is a NO-READ, never a crash
            problem = _stage_failed(exc)
        if problem is not None:
            log.warning("regions_failed", part_id=frame.part_id, error=problem)
            return no_read(Reason.REGIONS_ERROR, problem)
        t1 = time.monotonic()
        timings["regions"] = (t1 - t0) * 1000
        try:
            verdict = self.judge(frame, regions)
        except JudgeTimeout as exc:
            timings["judge"] = (time.monotonic() - t1) * 1000
            return no_read(Reason.TIMEOUT, str(exc), regions)
        except BaseException as exc:  # noqa: BLE001
            detail = _stage_failed(exc)
            timings["judge"] = (time.monotonic() - t1) * 1000
            log.warning("judge_failed", part_id=frame.part_id, error=detail)
            return no_read(Reason.JUDGE_ERROR, detail, regions)
        t2 = time.monotonic()
        timings["judge"] = (t2 - t1) * 1000
        problem = verdict_problem(verdict)
        if problem is not None:
            log.warning("judge_failed", part_id=frame.part_id, error=problem)
            return no_read(Reason.JUDGE_ERROR, problem, regions)
        try:
            decision = self.policy.decide(frame, verdict, timings)
        except BaseException as exc:  # noqa: BLE001 - a policy bug must not lose the part
            detail = f"the policy failed: {_stage_failed(exc)}"
            log.error("policy_failed", part_id=frame.part_id, error=detail)
            return no_read(Reason.JUDGE_ERROR, detail, regions)
        timings["policy"] = (time.monotonic() - t2) * 1000
        return done(decision, regions, verdict)

    def close(self) -> None:
        self.judge.close()
