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
