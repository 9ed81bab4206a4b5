"""The review queue: the inspections worth a person's look, most useful first, labelled ones left out.

In order of use to the learning loop:

1. ``no_read``: the station could not decide (what was wrong with the part, the camera or the judge);
2. ``reject``: a defect, or a false alarm to learn from; the least sure first;
3. ``uncertain``: a pass with low confidence (``confidence`` under ``low_confidence``) or split votes
   (the share of defective votes between ``split`` and ``1 - split``); the closest call first;
4. ``audit``: a small deterministic sample of the confident passes (a part is in it when the hash of
   its id falls under ``audit_share``), so that a miss the station is sure of still gets seen.

The rule for passes is the image saver's (``outputs/images.py: pass_review``), with the same
defaults (``images.review_confidence``, ``images.review_split``, ``images.audit_share``), so that the
passes the queue lists are the passes whose image (and plain frame) the station kept.

Within a group, ties go to the newest part. Read-only: any number of readers beside the writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from edge_inspector.outputs.images import audit_draw, pass_review
from edge_inspector.outputs.store import TABLE
from edge_inspector.review import labels

GROUPS = ("no_read", "reject", "uncertain", "audit")
COLUMNS = ("part_id", "camera", "trigger_time", "outcome", "reason", "score", "p_defective", "confidence",
           "defect_type", "decided_by", "vote_share", "valid_votes", "invalid_votes", "p_logit", "image_path")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    low_confidence: float = 0.9  # a pass under this confidence is uncertain
    split: float = 0.2  # a pass whose defective vote share is in [split, 1 - split] is split
    audit_share: float = 0.05  # the share of confident passes sampled for audit

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ValueError("low_confidence must be between 0 and 1")
        if not 0.0 < self.split <= 0.5:
            raise ValueError("split must be in (0, 0.5]")
        if not 0.0 <= self.audit_share <= 1.0:
            raise ValueError("audit_share must be between 0 and 1")


__all__ = ["GROUPS", "QueueSettings", "audit_draw", "build_queue", "classify"]


def classify(row: dict[str, Any], s: QueueSettings) -> tuple[str, float] | None:
    """The row's group and its priority inside it (smaller first); None: not worth a look."""
    outcome = row["outcome"]
    p = row.get("p_defective")
    if outcome == "NO-READ":
        return "no_read", 0.0
    if outcome == "REJECT":
        return "reject", p if p is not None else 1.0  # the least sure reject first
    if p is None:
        return "uncertain", 0.0  # a pass with no probability: never expected, worth a look
    why = pass_review(row["part_id"], row.get("confidence"), row.get("vote_share"), s.low_confidence, s.split,
                      s.audit_share)
    if why == "uncertain":
        return why, abs(p - 0.5)
    if why == "audit":
        return why, audit_draw(row["part_id"])
    return None


def build_queue(db: sqlite_utils.Database, settings: QueueSettings = QueueSettings(),
                limit: int | None = None) -> dict[str, Any]:
    """``{"queue": [row + "why"...], "counts": {group: n}, "labelled": n}``, the queue most useful first."""
    if TABLE not in db.table_names():
        return {"queue": [], "counts": dict.fromkeys(GROUPS, 0), "labelled": 0}
    done = set(labels.latest(db))
    found = []
    for row in db.query(f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"):
        if row["part_id"] in done:
            continue
        got = classify(row, settings)
        if got is not None:
            newest = -(row["trigger_time"] or 0.0)
            found.append((GROUPS.index(got[0]), got[1], newest, {**row, "why": got[0]}))
    found.sort(key=lambda t: t[:3])
    counts = dict.fromkeys(GROUPS, 0)
    for _, _, _, row in found:
        counts[row["why"]] += 1
    rows = [t[3] for t in found]
    return {"queue": rows[:limit] if limit is not None else rows, "counts": counts, "labelled": len(done)}
