import threading
import time

import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Action, Box, MapSummary, Outcome, Reason, Regions, Verdict
from edge_inspector.errors import JudgeError
from edge_inspector.judge.base import Judge
from edge_inspector.pipeline import Inspector
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.regions.base import RegionFinder
from tests.helpers import wait_until


class FixedRegions(RegionFinder):
    fingerprint = "fixed"

    def __init__(self, fail=False, result=None):
        self.fail = fail
        self.result = result

    def find(self, frame):
        if self.fail is True:
            raise RuntimeError("registration exploded")
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.result is not None:
            return self.result()
        return Regions(score=0.1, boxes=(), summary=MapSummary(0.1, 0, 0, 0), model="fixed")


class ScriptedJudge(Judge):
    fingerprint = "scripted"

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.release = threading.Event()

    def judge(self, frame, regions, deadline_mono):
        if self.behaviour == "raise":
            raise JudgeError("model crashed")
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        if callable(self.behaviour):
            return self.behaviour()
        if self.behaviour == "hang":
            self.release.wait(10)
        return Verdict(defective=False, p_defective=0.1, confidence=0.9, decided_by="vlm", model="s")


def frame(deadline_s=0.3, image=True):
    img = np.zeros((8, 8), np.uint8) if image else None
    return PartFactory(deadline_s).trigger("cam").frame(img, error=None if image else "unreadable: x")


def make(judge, regions=None):
    return Inspector(regions or FixedRegions(), judge, Policy(PolicyConfig()), grace_s=0.01)


def test_a_good_part_passes_with_stage_timings():
    ins = make(ScriptedJudge("ok")).inspect(frame())
    assert ins.decision.outcome is Outcome.PASS
    assert {"queue", "regions", "judge", "policy", "total"} <= set(ins.decision.timings_ms)


def test_an_unreadable_frame_is_a_no_read():
    d = make(ScriptedJudge("ok")).inspect(frame(image=False)).decision
    assert (d.outcome, d.reason) == (Outcome.NO_READ, Reason.UNREADABLE)
    assert "unreadable: x" in d.detail


def test_a_judge_that_raises_is_a_judge_error():
    ins = make(ScriptedJudge("raise")).inspect(frame())
    assert (ins.decision.outcome, ins.decision.reason) == (Outcome.NO_READ, Reason.JUDGE_ERROR)
    assert ins.regions is not None and "model crashed" in ins.decision.detail


def test_a_regions_failure_is_a_no_read():
    d = make(ScriptedJudge("ok"), FixedRegions(fail=True)).inspect(frame()).decision
    assert (d.outcome, d.reason) == (Outcome.NO_READ, Reason.REGIONS_ERROR)


def test_a_hung_judge_times_out_at_the_deadline_and_the_next_part_fails_fast():
    judge = ScriptedJudge("hang")
    inspector = make(judge)
    t = time.monotonic()
    d1 = inspector.inspect(frame(deadline_s=0.2)).decision
    assert (d1.outcome, d1.reason) == (Outcome.NO_READ, Reason.TIMEOUT)
    assert time.monotonic() - t < 5.0  # at the deadline, not when the judge returns (10 s)
    d2 = inspector.inspect(frame(deadline_s=5.0)).decision
    assert d2.reason is Reason.TIMEOUT and "still busy" in d2.detail
    judge.behaviour = "ok"
    judge.release.set()
    assert wait_until(lambda: inspector.judge.busy_for_s == 0, 30)
    assert inspector.inspect(frame(deadline_s=5.0)).decision.outcome is Outcome.PASS


@pytest.mark.parametrize("behaviour", ["ok", "raise"])
def test_every_path_gives_exactly_one_decision_for_the_part(behaviour):
    f = frame()
    ins = make(ScriptedJudge(behaviour)).inspect(f)
    assert ins.decision.part_id == f.part_id


class Doom(BaseException):
    """Something a stage may raise that is neither an Exception nor a known exit."""


def nan_verdict():
    return Verdict(defective=False, p_defective=float("nan"), confidence=0.9, decided_by="vlm", model="s")


@pytest.mark.parametrize("behaviour", [lambda: None, nan_verdict, lambda: "PASS",
                                       SystemExit(3), KeyboardInterrupt(), GeneratorExit(), Doom("x")],
                         ids=["None", "nan", "str", "SystemExit", "KeyboardInterrupt", "GeneratorExit",
                              "BaseException"])
def test_whatever_the_judge_returns_or_raises_the_part_gets_one_judge_error_no_read(behaviour):
    f = frame()
    inspector = make(ScriptedJudge(behaviour))
    ins = inspector.inspect(f)
    assert ins.decision.part_id == f.part_id
    assert (ins.decision.outcome, ins.decision.reason) == (Outcome.NO_READ, Reason.JUDGE_ERROR)
    assert ins.decision.action is Action.REJECT and ins.verdict is None
    inspector.judge.judge.behaviour = "ok"  # the judge thread survived: the next part is judged
    assert inspector.inspect(frame(deadline_s=5.0)).decision.outcome is Outcome.PASS


def nan_regions():
    return Regions(score=float("nan"), boxes=(), summary=MapSummary(0.1, 0, 0, 0), model="fixed")


def nan_box_regions():
    return Regions(score=2.0, boxes=(Box(0, 0, 2, 2, float("nan")),), summary=MapSummary(2, 0, 0, 4),
                   model="fixed")


@pytest.mark.parametrize("regions", [FixedRegions(result=lambda: None), FixedRegions(result=nan_regions),
                                     FixedRegions(result=nan_box_regions), FixedRegions(fail=SystemExit(1)),
                                     FixedRegions(fail=KeyboardInterrupt()), FixedRegions(fail=Doom())],
                         ids=["None", "nan-score", "nan-box", "SystemExit", "KeyboardInterrupt-off-main",
                              "BaseException"])
def test_whatever_the_regions_stage_returns_or_raises_the_part_gets_one_regions_error_no_read(regions):
    f = frame()
    box: dict = {}
    # off the main thread, as in the daemon's worker (a KeyboardInterrupt there is the stage's own)
    t = threading.Thread(target=lambda: box.update(ins=make(ScriptedJudge("ok"), regions).inspect(f)))
    t.start()
    t.join(10)
    ins = box["ins"]
    assert ins.decision.part_id == f.part_id
    assert (ins.decision.outcome, ins.decision.reason) == (Outcome.NO_READ, Reason.REGIONS_ERROR)
    assert ins.decision.action is Action.REJECT


def test_ctrl_c_in_the_main_thread_still_stops_the_inspect_command():
    with pytest.raises(KeyboardInterrupt):
        make(ScriptedJudge("ok"), FixedRegions(fail=KeyboardInterrupt())).inspect(frame())


def test_a_policy_that_raises_is_a_no_read_not_a_dead_worker():
    class Broken(Policy):
        def decide(self, *a, **k):
            raise ZeroDivisionError("bug")

    ins = Inspector(FixedRegions(), ScriptedJudge("ok"), Broken(PolicyConfig()), grace_s=0.01).inspect(frame())
    assert (ins.decision.outcome, ins.decision.reason) == (Outcome.NO_READ, Reason.JUDGE_ERROR)
    assert "ZeroDivisionError" in ins.decision.detail


def test_a_capture_time_that_is_not_a_number_does_not_lose_the_part():
    f = PartFactory(5.0).trigger("cam").frame(np.zeros((8, 8), np.uint8), meta={"capture_ms": "soon"})
    assert make(ScriptedJudge("ok")).inspect(f).decision.outcome is Outcome.PASS
