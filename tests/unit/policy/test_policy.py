import math

import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Action, Outcome, Reason, Verdict
from edge_inspector.policy import FailsafeConfig, Policy, PolicyConfig


def verdict(p):
    return Verdict(defective=p >= 0.5, p_defective=p, confidence=max(p, 1 - p), decided_by="vlm", model="m")


@pytest.fixture
def frame():
    return PartFactory(deadline_s=10.0).trigger("cam").frame(None, error="x")


def test_threshold_decides_pass_or_reject(frame):
    policy = Policy(PolicyConfig(reject_threshold=0.7))
    assert policy.decide(frame, verdict(0.69), {}).outcome is Outcome.PASS
    d = policy.decide(frame, verdict(0.7), {})
    assert (d.outcome, d.action, d.reason) == (Outcome.REJECT, Action.REJECT, Reason.DEFECT)


def test_low_confidence_is_a_no_read_with_the_failsafe_action(frame):
    policy = Policy(PolicyConfig(min_confidence=0.8, failsafe=FailsafeConfig(low_confidence=Action.PASS)))
    d = policy.decide(frame, verdict(0.3), {})
    assert (d.outcome, d.reason, d.action) == (Outcome.NO_READ, Reason.LOW_CONFIDENCE, Action.PASS)
    assert policy.decide(frame, verdict(0.1), {}).outcome is Outcome.PASS


def test_a_decision_after_the_deadline_is_a_timeout(frame):
    d = Policy(PolicyConfig()).decide(frame, verdict(0.0), {}, now=frame.deadline_mono + 0.25)
    assert (d.outcome, d.reason, d.action, d.late) == (Outcome.NO_READ, Reason.TIMEOUT, Action.REJECT, True)
    assert "250 ms after the deadline" in d.detail


@pytest.mark.parametrize("reason", [r for r in Reason if r not in (Reason.OK, Reason.DEFECT)])
def test_every_no_read_reason_has_a_failsafe_that_defaults_to_reject(frame, reason):
    d = Policy(PolicyConfig()).no_read(frame, reason, "why", {})
    assert d.outcome is Outcome.NO_READ and d.action is Action.REJECT
    assert hasattr(FailsafeConfig(), str(reason)), f"no failsafe key for {reason}"


def test_an_offline_frame_never_times_out():
    frame = PartFactory(deadline_s=math.inf).trigger("cam").frame(None, error="x")
    assert Policy(PolicyConfig()).decide(frame, verdict(0.0), {}).outcome is Outcome.PASS


NOT_PROBABILITIES = [math.nan, math.inf, -math.inf, -0.01, 1.01, 2.0]


@pytest.mark.parametrize("p", NOT_PROBABILITIES)
def test_a_verdict_that_is_not_a_finite_probability_is_a_judge_error_no_read(frame, p):
    v = Verdict(defective=False, p_defective=p, confidence=0.9, decided_by="vlm", model="m")
    d = Policy(PolicyConfig(failsafe=FailsafeConfig(judge_error=Action.REJECT))).decide(frame, v, {})
    assert (d.outcome, d.reason, d.action) == (Outcome.NO_READ, Reason.JUDGE_ERROR, Action.REJECT)
    assert "P(defective)" in d.detail


@pytest.mark.parametrize("c", NOT_PROBABILITIES)
def test_a_confidence_that_is_not_a_finite_probability_is_a_no_read(frame, c):
    v = Verdict(defective=False, p_defective=0.1, confidence=c, decided_by="vlm", model="m")
    d = Policy(PolicyConfig(min_confidence=0.8)).decide(frame, v, {})
    assert (d.outcome, d.reason, d.action) == (Outcome.NO_READ, Reason.JUDGE_ERROR, Action.REJECT)
    assert "confidence" in d.detail


@pytest.mark.parametrize("bad", [None, "0.1", 0.1, object(), {"p_defective": 0.1}])
def test_something_that_is_not_a_verdict_is_a_no_read(frame, bad):
    d = Policy(PolicyConfig()).decide(frame, bad, {})
    assert (d.outcome, d.reason, d.action) == (Outcome.NO_READ, Reason.JUDGE_ERROR, Action.REJECT)
    assert type(bad).__name__ in d.detail


@pytest.mark.parametrize("p", ["0.1", None, True, 1j])
def test_a_verdict_whose_probability_is_not_a_number_is_a_no_read(frame, p):
    v = Verdict(defective=False, p_defective=p, confidence=0.9, decided_by="vlm", model="m")
    d = Policy(PolicyConfig()).decide(frame, v, {})
    assert (d.outcome, d.reason) == (Outcome.NO_READ, Reason.JUDGE_ERROR)


def test_numpy_floats_are_probabilities_too(frame):
    import numpy as np

    v = Verdict(defective=True, p_defective=np.float32(0.9), confidence=np.float64(0.9),
                decided_by="vlm", model="m")
    assert Policy(PolicyConfig()).decide(frame, v, {}).outcome is Outcome.REJECT
