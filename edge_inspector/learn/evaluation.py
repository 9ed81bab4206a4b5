"""Scoring a labelled recording: the station's results against the ground truth, and one model
version's per-part decisions against another's on the same recording.

A labelled item is a line of an ``inspect`` manifest with ``"label": "good" | "defective"`` and/or
ground-truth ``"boxes"`` / ``"polygons"``; a result is what ``Inspection.to_json()`` gives (``action``
is what the gate did: a NO-READ with a REJECT fail-safe counts as rejected). ``tools/evaluate.py`` and
``edge-inspector model evaluate`` both score with these functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_inspector.regions.boxes import box_iou


def match_boxes(truth: list, preds: list, iou_min: float = 0.33) -> list[tuple[int, int]]:
    """A largest one-to-one matching of ground-truth boxes to predicted boxes with IoU > ``iou_min``
    (augmenting paths): one box answers for one region at most, and one region is found once."""
    if not truth or not preds:
        return []
    ok = box_iou(np.asarray(truth, np.float64), np.asarray(preds, np.float64)) > iou_min
    owner: dict[int, int] = {}  # pred -> truth

    def claim(g: int, seen: set[int]) -> bool:
        for p in np.flatnonzero(ok[g]):
            p = int(p)
            if p in seen:
                continue
            seen.add(p)
            if p not in owner or claim(owner[p], seen):
                owner[p] = g
                return True
        return False

    for g in range(len(truth)):
        claim(g, set())
    return sorted((g, p) for p, g in owner.items())


def truth_boxes(item: dict[str, Any]) -> list[list[float]]:
    boxes = [list(map(float, b)) for b in item.get("boxes") or []]
    for poly in item.get("polygons") or []:
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        boxes.append([min(xs), min(ys), max(xs), max(ys)])
    return boxes


def is_defective(item: dict[str, Any]) -> bool | None:
    label = item.get("label", item.get("defective"))
    if isinstance(label, bool):
        return label
    if isinstance(label, str) and label.lower() in ("good", "ok", "pass", "normal", "defective", "ng", "bad",
                                                    "defect", "reject", "anomalous"):
        return label.lower() not in ("good", "ok", "pass", "normal")
    return True if truth_boxes(item) else None


def score_parts(items: list[dict], results: list[dict], iou_min: float = 0.33) -> dict[str, Any]:
    """The recording's figures from labelled items and the station's results (same order)."""
    n = good = bad = correct = overkill = miss = no_read = judged = skipped = 0
    gt_total = gt_hit = pred_total = pred_hit = 0
    for item, r in zip(items, results):
        truth = is_defective(item)
        if truth is None:
            continue
        n += 1
        rejected = r["action"] == "REJECT"
        no_read += r["decision"] == "NO-READ"
        good += not truth
        bad += truth
        correct += rejected == truth
        overkill += rejected and not truth
        miss += truth and not rejected
        if r.get("decided_by"):
            judged += 1
            skipped += r["decided_by"] == "regions"
        gts = truth_boxes(item)
        preds = [b["box"] for b in r.get("regions") or []]
        matched = len(match_boxes(gts, preds, iou_min))
        gt_total += len(gts)
        gt_hit += matched
        if gts or not truth:  # a defective part without drawn regions says nothing of its boxes
            pred_total += len(preds)
            pred_hit += matched

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {"parts": n, "good": good, "defective": bad, "accuracy": ratio(correct, n),
            "overkill_rate": ratio(overkill, good), "miss_rate": ratio(miss, bad), "no_reads": no_read,
            "box_recall": ratio(gt_hit, gt_total), "box_precision": ratio(pred_hit, pred_total),
            "gt_regions": gt_total, "boxes": pred_total, "iou_min": iou_min,
            "cascade_skip_rate": ratio(skipped, judged)}


def rejected(result: dict[str, Any]) -> bool:
    """What the gate did with the part (a NO-READ's fail-safe included)."""
    return result.get("action") == "REJECT"


def compare(items: list[dict], current: list[dict] | None, candidate: list[dict],
            iou_min: float = 0.33) -> dict[str, Any]:
    """A candidate model version against the current one on the same labelled items (same order):
    each one's figures (:func:`score_parts`), both decisions per part, the defective parts the
    current version caught and the candidate misses (what refuses a promotion), and the change in
    overkill (good parts rejected). ``current`` None: no version to compare with (figures only)."""
    per_part, missed, new_overkill = [], [], []
    for i, (item, cand) in enumerate(zip(items, candidate, strict=True)):
        cur = current[i] if current is not None else None
        truth = is_defective(item)
        row = {"id": cand.get("id", item.get("id")), "label": item.get("label"), "defective": truth,
               "candidate": {"decision": cand.get("decision"), "action": cand.get("action"),
                             "p_defective": cand.get("p_defective"), "decided_by": cand.get("decided_by")}}
        if cur is not None:
            row["current"] = {"decision": cur.get("decision"), "action": cur.get("action"),
                              "p_defective": cur.get("p_defective"), "decided_by": cur.get("decided_by")}
            if truth is True and rejected(cur) and not rejected(cand):
                missed.append(row["id"])
            if truth is False and rejected(cand) and not rejected(cur):
                new_overkill.append(row["id"])
        per_part.append(row)
    cand_scores = score_parts(items, candidate, iou_min)
    out: dict[str, Any] = {"candidate": cand_scores, "per_part": per_part}
    if current is not None:
        cur_scores = score_parts(items, current, iou_min)
        c, k = cur_scores["overkill_rate"], cand_scores["overkill_rate"]
        out.update(current=cur_scores, missed_caught_by_current=missed, new_overkill=new_overkill,
                   overkill_delta=None if c is None or k is None else round(k - c, 4))
    return out
