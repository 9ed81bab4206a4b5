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
from dataclasses import dataclass

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
    """Runs a judge on its own thread and waits at most until each part's deadline (plus a grace).

    A judge that hangs cannot stall the line: the part is a timeout, and while the judge is still
    stuck every further part is a timeout at once (``busy``), until it returns. The thread is a
    daemon thread, so a stuck judge cannot keep the process from exiting either. Several parts
    that wait together (a multi-camera station) go to the judge in one call (:meth:`batch`); each
    is waited for until its own deadline.
    """

    def __init__(self, judge: Judge, grace_s: float = 0.05) -> None:
        self.judge = judge
        self.grace_s = grace_s
        self.calls = 0  # judge calls made (a batch is one)
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
            items, box = job
            try:
                if len(items) == 1:  # one part: the judge's own call, as before batches existed
                    frame, regions = items[0]
                    box["results"] = [self.judge.judge(frame, regions, frame.deadline_mono)]
                else:
                    box["results"] = list(self.judge.judge_many(items))
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
        result = self.batch([(frame, regions)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def batch(self, items: list[tuple[Frame, Regions]]) -> list[Verdict | Exception]:
        """A verdict or the exception for each part (JudgeTimeout for one whose deadline passed
        first), in order; never raises for a part."""
        if not items:
            return []
        if self._busy_since is not None:
            return [JudgeTimeout(f"the judge is still busy with part {self._busy_part} "
                                 f"({self.busy_for_s:.1f} s)") for _ in items]
        box: dict = {"done": threading.Event()}
        self._busy_since, self._busy_part = time.monotonic(), items[0][0].part_id
        self.calls += 1
        self._jobs.put((list(items), box))
        results: list[Verdict | Exception | None] = [None] * len(items)
        for i in sorted(range(len(items)), key=lambda i: items[i][0].deadline_mono):
            remaining = items[i][0].remaining_s()
            timeout = None if remaining == float("inf") else max(0.0, remaining) + self.grace_s
            if box["done"].wait(timeout):
                break
            results[i] = JudgeTimeout("the judge did not answer before the deadline")
        if not box["done"].is_set():
            return results  # type: ignore[return-value] - every part has timed out
        got = box.get("results")
        if "error" in box or got is None or len(got) != len(items):
            err = box.get("error") or JudgeError(f"the judge answered {len(got or [])} verdicts "
                                                 f"for {len(items)} parts")
            got = [err] * len(items)
        return [r if r is not None else _as_failure(g) for r, g in zip(results, got, strict=True)]

    def close(self) -> None:
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        self.judge.close()


def _as_failure(result):
    """A judge's result for one part: a verdict, an Exception, or a SystemExit/KeyboardInterrupt
    raised by the judge's code on its own thread (a failure of this part, not a request to stop
    the process)."""
    if isinstance(result, BaseException) and not isinstance(result, Exception):
        return JudgeError(f"the judge raised {type(result).__name__}: {result}")
    return result


@dataclass(slots=True)
class Pending:
    """A part between its regions and its verdict (the judge may take several at once)."""

    frame: Frame
    regions: Regions
    timings: dict[str, float]
    t_judge: float  # time.monotonic() when it was handed to the judge


class Inspector:
    """regions -> judge -> policy for one frame, with the time of each stage.

    ``judge``: a Judge (this inspector runs it behind its own :class:`GuardedJudge` and closes it)
    or a GuardedJudge shared with other cameras' inspectors (its owner closes it)."""

    def __init__(self, regions: RegionFinder, judge: Judge | GuardedJudge, policy: Policy,
                 grace_s: float = 0.05) -> None:
        self.regions = regions
        self.owns_judge = not isinstance(judge, GuardedJudge)
        self.judge = GuardedJudge(judge, grace_s) if self.owns_judge else judge
        self.policy = policy

    @property
    def model_hash(self) -> str:
        return f"{self.regions.fingerprint}+{self.judge.judge.fingerprint}"

    def inspect(self, frame: Frame, started: float | None = None) -> Inspection:
        step = self.prepare(frame, started)
        if isinstance(step, Inspection):
            return step
        return self.finish(step, self.judge.batch([(step.frame, step.regions)])[0])

    def prepare(self, frame: Frame, started: float | None = None) -> Inspection | Pending:
        """Up to the judge: a NO-READ Inspection when the part ends here, else what the judge needs."""
        t0 = time.monotonic() if started is None else started
        timings = {"queue": (t0 - frame.trigger_mono) * 1000}
        if "capture_ms" in frame.meta:
            try:
                timings["capture"] = float(frame.meta["capture_ms"])
            except (TypeError, ValueError):
                log.warning("capture_time_ignored", part_id=frame.part_id,
                            capture_ms=repr(frame.meta["capture_ms"]))
        if not frame.readable:
            return self._no_read(frame, timings, frame.error_reason, frame.error or "no image")
        try:
            regions = self.regions.find(frame)
            problem = regions_problem(regions)
        except RegistrationFailed as exc:  # a registration that cannot be trusted: its own reason
            log.warning("registration_failed", part_id=frame.part_id, error=str(exc), **exc.figures)
            return self._no_read(frame, timings, Reason.REGISTRATION_FAILED, str(exc))
        except BaseException as exc:  # noqa: BLE001 - any failure is a NO-READ, never a crash
            problem = _stage_failed(exc)
        if problem is not None:
            log.warning("regions_failed", part_id=frame.part_id, error=problem)
            return self._no_read(frame, timings, Reason.REGIONS_ERROR, problem)
        t1 = time.monotonic()
        timings["regions"] = (t1 - t0) * 1000
        return Pending(frame, regions, timings, t1)

    def finish(self, step: Pending, result: Verdict | BaseException) -> Inspection:
        """From the judge's verdict (or its failure for this part) to the decision."""
        frame, regions, timings = step.frame, step.regions, step.timings
        t2 = time.monotonic()
        timings["judge"] = (t2 - step.t_judge) * 1000
        if isinstance(result, JudgeTimeout):
            return self._no_read(frame, timings, Reason.TIMEOUT, str(result), regions)
        if isinstance(result, BaseException):
            detail = _stage_failed(result)
            log.warning("judge_failed", part_id=frame.part_id, error=detail)
            return self._no_read(frame, timings, Reason.JUDGE_ERROR, detail, regions)
        verdict = result
        problem = verdict_problem(verdict)
        if problem is not None:
            log.warning("judge_failed", part_id=frame.part_id, error=problem)
            return self._no_read(frame, timings, Reason.JUDGE_ERROR, problem, regions)
        try:
            decision = self.policy.decide(frame, verdict, timings)
        except BaseException as exc:  # noqa: BLE001 - a policy bug must not lose the part
            detail = f"the policy failed: {_stage_failed(exc)}"
            log.error("policy_failed", part_id=frame.part_id, error=detail)
            return self._no_read(frame, timings, Reason.JUDGE_ERROR, detail, regions)
        timings["policy"] = (time.monotonic() - t2) * 1000
        return _done(frame, decision, regions, verdict)

    def _no_read(self, frame: Frame, timings: dict[str, float], reason: Reason, detail: str,
                 regions: Regions | None = None) -> Inspection:
        return _done(frame, self.policy.no_read(frame, reason, detail, timings), regions)

    def close(self) -> None:
        if self.owns_judge:
            self.judge.close()


def _done(frame: Frame, decision, regions: Regions | None = None, verdict: Verdict | None = None) -> Inspection:
    decision.timings_ms["total"] = (time.monotonic() - frame.trigger_mono) * 1000
    return Inspection(frame, decision, regions, verdict)


def inspect_batch(jobs: list[tuple[Inspector, Frame]], judge: GuardedJudge) -> list[Inspection]:
    """Several parts (each with its camera's inspector) through their stages, the parts that reach
    the judge together in one ``judge`` call. One Inspection per job, in order."""
    steps = [inspector.prepare(frame) for inspector, frame in jobs]
    waiting = [i for i, s in enumerate(steps) if isinstance(s, Pending)]
    for i in waiting:  # the judge's time counts from the batch's start for each part
        steps[i].t_judge = time.monotonic()
    verdicts = judge.batch([(steps[i].frame, steps[i].regions) for i in waiting])
    for i, verdict in zip(waiting, verdicts, strict=True):
        steps[i] = jobs[i][0].finish(steps[i], verdict)
    return steps  # type: ignore[return-value] - every step is an Inspection now
