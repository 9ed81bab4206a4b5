"""From a verdict (or a failure) to a decision.

A NO-READ is a decision in its own right (the station could not inspect the part); what the reject
gate does with it is the configured fail-safe action for that reason, REJECT by default, so a part
that was not inspected is never passed unless someone chose that.
"""

from __future__ import annotations

import time

from pydantic import Field, model_validator

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Action, Decision, Frame, Outcome, Reason, Verdict
from edge_inspector.policy.checks import verdict_problem


class FailsafeConfig(ConfigModel):
    unreadable_frame: Action = Field(Action.REJECT, description="Gate action for a frame that could "
                                     "not be read (corrupt, empty, camera error).")
    camera_offline: Action = Field(Action.REJECT, description="Gate action for a trigger while the "
                                   "camera is down.")
    regions_error: Action = Field(Action.REJECT, description="Gate action when the regions stage fails.")
    registration_failed: Action = Field(Action.REJECT, description="Gate action when the frame cannot "
                                        "be registered to the reference with confidence (moved beyond "
                                        "the budget, another product, a blank frame).")
    judge_error: Action = Field(Action.REJECT, description="Gate action when the judge fails.")
    timeout: Action = Field(Action.REJECT, description="Gate action when the decision would miss the "
                            "part's deadline.")
    low_confidence: Action = Field(Action.REJECT, description="Gate action when the verdict's "
                                   "confidence is below policy.min_confidence.")
    queue_overflow: Action = Field(Action.REJECT, description="Gate action for a part dropped because "
                                   "the inspection queue was full.")
    paused: Action = Field(Action.REJECT, description="Gate action for a trigger while a technician "
                           "has paused the station (`edge-inspector ctl pause`).")
    not_recorded: Action = Field(Action.REJECT, description="Gate action for a trigger while the "
                                 "station cannot record its decisions (the store's last write failed: "
                                 "disk full, I/O error) until a write succeeds again.")

    def action_for(self, reason: Reason) -> Action:
        return getattr(self, str(reason), Action.REJECT)


class PolicyConfig(ConfigModel):
    deadline_ms: float = Field(2000.0, gt=0, description="Time from the trigger by which the PLC must "
                               "have the decision (the part reaches the reject gate).")
    reject_threshold: float = Field(0.5, gt=0, lt=1, description="Reject when the calibrated "
                                    "P(defective) is at least this.")
    min_confidence: float = Field(0.0, ge=0, le=1, description="Below this confidence the part is a "
                                  "NO-READ (reason low_confidence). 0 disables the check.")
    failsafe: FailsafeConfig = Field(default_factory=FailsafeConfig, description="Gate action for "
                                     "each NO-READ reason.")

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        if self.min_confidence > 0 and self.min_confidence <= 0.5:
            raise ValueError("min_confidence must be 0 (off) or above 0.5: a binary verdict's "
                             "confidence is never below 0.5")
        return self


class Policy:
    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg

    def no_read(self, frame: Frame, reason: Reason, detail: str, timings: dict[str, float],
                now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        return Decision(part_id=frame.part_id, outcome=Outcome.NO_READ,
                        action=self.cfg.failsafe.action_for(reason), reason=reason, detail=detail,
                        timings_ms=timings, decided_mono=now, late=now > frame.deadline_mono)

    def decide(self, frame: Frame, verdict: Verdict, timings: dict[str, float],
               now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        problem = verdict_problem(verdict)
        if problem is not None:  # NaN >= threshold is False: nonsense would pass the part
            return self.no_read(frame, Reason.JUDGE_ERROR, problem, timings, now)
        if now > frame.deadline_mono:
            late_ms = (now - frame.deadline_mono) * 1000
            return self.no_read(frame, Reason.TIMEOUT, f"decided {late_ms:.0f} ms after the deadline",
                                timings, now)
        if self.cfg.min_confidence and verdict.confidence < self.cfg.min_confidence:
            return self.no_read(frame, Reason.LOW_CONFIDENCE,
                                f"confidence {verdict.confidence:.3f} < {self.cfg.min_confidence}",
                                timings, now)
        reject = float(verdict.p_defective) >= self.cfg.reject_threshold
        outcome = Outcome.REJECT if reject else Outcome.PASS
        detail = (f"P(defective) {verdict.p_defective:.3f} "
                  f"{'>=' if reject else '<'} {self.cfg.reject_threshold} ({verdict.decided_by})")
        return Decision(part_id=frame.part_id, outcome=outcome, action=Action(outcome.value),
                        reason=Reason.DEFECT if reject else Reason.OK, detail=detail, timings_ms=timings,
                        decided_mono=now, late=False)
