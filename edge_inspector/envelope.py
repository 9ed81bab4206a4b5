"""The typed envelope that travels the stages: capture -> regions -> judge -> policy -> outputs.

Each stage fills its own part and never edits another's:

- capture makes a :class:`Frame` (one per trigger, also when the image could not be read);
- regions makes :class:`Regions` (anomaly map summary, boxes with scores, zoomed crops);
- the judge makes a :class:`Verdict` (votes, P(defective), confidence, defect type);
- the policy makes a :class:`Decision` (PASS / REJECT / NO-READ, the gate action, the reason);
- outputs receive the whole :class:`Inspection`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Outcome(StrEnum):
    """What the station concluded about a part."""

    PASS = "PASS"
    REJECT = "REJECT"
    NO_READ = "NO-READ"


class Action(StrEnum):
    """What the reject gate does with the part. A NO-READ maps to the configured fail-safe action."""

    PASS = "PASS"
    REJECT = "REJECT"


class Reason(StrEnum):
    """Why a decision was made. Stable strings: they land in SQLite, MQTT and the PLC's error code."""

    OK = "ok"  # the judge's verdict was confident and in time
    DEFECT = "defect"
    LOW_CONFIDENCE = "low_confidence"
    UNREADABLE = "unreadable_frame"
    REGIONS_ERROR = "regions_error"
    JUDGE_ERROR = "judge_error"
    TIMEOUT = "timeout"
    OVERFLOW = "queue_overflow"
    CAMERA_OFFLINE = "camera_offline"
    PAUSED = "paused"  # a technician paused the station (control socket): not inspected
    REGISTRATION_FAILED = "registration_failed"  # the frame could not be registered with confidence
    NOT_RECORDED = "not_recorded"  # the station cannot record (disk full): not inspected, fail-safe


@dataclass(frozen=True, slots=True)
class Frame:
    """One triggered part as captured. ``image`` is None when the capture failed; ``error`` says why."""

    part_id: str
    seq: int
    camera: str
    trigger_mono: float  # time.monotonic() at the trigger: deadlines are measured from here
    trigger_wall: float  # time.time() at the trigger: for records and humans
    deadline_mono: float  # the time by which the PLC must have the decision
    image: np.ndarray | None
    source: str = ""  # where the image came from (file path, camera frame id, ...)
    error: str | None = None
    error_reason: Reason = Reason.UNREADABLE  # the decision's reason when ``error`` is set
    reference: np.ndarray | None = None  # a per-part one-shot reference (manifest runs), else None
    meta: dict[str, Any] = field(default_factory=dict)  # camera frame id, timestamps, ...

    @property
    def readable(self) -> bool:
        return self.image is not None and self.error is None

    def remaining_s(self, now: float | None = None) -> float:
        return self.deadline_mono - (time.monotonic() if now is None else now)


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in the frame's pixel coordinates (x2, y2 exclusive) with an anomaly score."""

    x1: int
    y1: int
    x2: int
    y2: int
    score: float
    area_px: int = 0  # the anomalous pixels inside the box

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    def as_list(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]

    def to_json(self) -> dict[str, Any]:
        return {"box": self.as_list(), "score": round(float(self.score), 4), "area_px": self.area_px}


@dataclass(frozen=True, slots=True)
class MapSummary:
    """A small summary of the anomaly map (the map itself is not stored)."""

    max: float
    mean: float
    p99: float
    area_over_px: int  # pixels over the threshold before the area filter

    def to_json(self) -> dict[str, float]:
        return {"max": round(self.max, 4), "mean": round(self.mean, 4), "p99": round(self.p99, 4),
                "area_over_px": self.area_over_px}


@dataclass(frozen=True, slots=True)
class Regions:
    """What the regions stage found: a scalar anomaly score, boxes, crops for the judge, the map."""

    score: float  # >= threshold iff at least one box
    boxes: tuple[Box, ...]
    summary: MapSummary
    model: str  # the regions model's fingerprint
    anomaly_map: np.ndarray | None = None  # in frame coordinates, float32, in tolerance units
    crops: tuple[np.ndarray, ...] = ()  # zoomed crops, in the order of ``boxes``
    registration: dict[str, Any] = field(default_factory=dict)  # dx, dy, angle_deg, warp (3x3), ...


@dataclass(frozen=True, slots=True)
class Vote:
    """One sampled answer of the judge. ``defective`` None means the answer did not parse (invalid)."""

    defective: bool | None
    defect_type: str | None = None
    region: int | None = None
    description: str = ""
    raw: str = ""

    @property
    def valid(self) -> bool:
        return self.defective is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's answer for one part."""

    defective: bool
    p_defective: float  # the calibrated probability that the part is defective
    confidence: float  # probability of the verdict's own answer: max(p, 1 - p) for a binary verdict
    decided_by: str  # "regions" (cascade / anomaly judge) or "vlm"
    model: str  # the judge model's fingerprint
    defect_type: str | None = None
    votes: tuple[Vote, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided, with the gate action and the time spent in each stage."""

    part_id: str
    outcome: Outcome
    action: Action
    reason: Reason
    detail: str  # a human sentence: the error message, the threshold crossed, ...
    timings_ms: dict[str, float]
    decided_mono: float
    late: bool  # the decision was made after the part's deadline
    # set by a PLC link that knows what its reject gate did (outputs.base.Output.gate): then
    # ``action`` is the gate's action and this says how it came about: "applied" (the decision),
    # "failsafe_deadline" / "failsafe_heartbeat" (the bridge's own fail-safe), "not_delivered"
    # (the gate never had the part: no pulse), "unconfirmed" (no answer from the gate yet)
    gate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"part_id": self.part_id, "outcome": str(self.outcome), "action": str(self.action),
                "gate": self.gate, "reason": str(self.reason), "detail": self.detail, "late": self.late,
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


@dataclass(frozen=True, slots=True)
class Inspection:
    """The whole envelope, as outputs receive it. ``regions`` and ``verdict`` are None when the part
    never reached that stage (unreadable frame, error, timeout)."""

    frame: Frame
    decision: Decision
    regions: Regions | None = None
    verdict: Verdict | None = None
    views: tuple[Inspection, ...] = ()  # a view set's part: each camera's own (policy/views.py)

    def to_json(self) -> dict[str, Any]:
        """The result as a flat JSON object: the CLI, the store and MQTT share this shape. A view
        set's part also lists its ``views`` (camera, decision, reason, detail, score, P(defective))."""
        out = self._flat()
        if self.views:
            out["views"] = [{k: j[k] for k in ("camera", "source", "decision", "action", "reason",
                                               "detail", "score", "p_defective", "regions")}
                            for j in (v._flat() for v in self.views)]
        return out

    def _flat(self) -> dict[str, Any]:
        f, d, r, v = self.frame, self.decision, self.regions, self.verdict
        return {
            "id": f.part_id,
            "seq": f.seq,
            "camera": f.camera,
            "source": f.source,
            "trigger_time": f.trigger_wall,
            "decision": str(d.outcome),
            "action": str(d.action),
            "gate": d.gate,
            "reason": str(d.reason),
            "detail": d.detail,
            "late": d.late,
            "score": round(float(r.score), 4) if r else None,
            "regions": [b.to_json() for b in r.boxes] if r else [],
            "map": r.summary.to_json() if r else None,
            "defective": v.defective if v else None,
            "p_defective": round(v.p_defective, 4) if v else None,
            "confidence": round(v.confidence, 4) if v else None,
            "defect_type": v.defect_type if v else None,
            "decided_by": v.decided_by if v else None,
            "votes": [{"defective": x.defective, "defect_type": x.defect_type, "region": x.region,
                       "description": x.description} for x in v.votes] if v else [],
            "judge": v.details if v else {},
            "timings_ms": {k: round(t, 3) for k, t in d.timings_ms.items()},
        }
