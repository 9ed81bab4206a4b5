"""The station keeps the image (and plain frame) of every pass the review queue will list, and of no
other pass: a person can look at each queued part, and the export has real known-good frames."""

from __future__ import annotations

import numpy as np

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Box, Inspection, MapSummary, Regions, Verdict
from edge_inspector.outputs.images import RejectImages, RejectImagesConfig, audit_draw, frame_path_for
from edge_inspector.outputs.store import TABLE, Store
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.review.queue import QueueSettings, build_queue


PARTS = PartFactory(1.0)  # one factory: its part ids never repeat (62 run tags made in one second could)


def a_pass(p: float, share: float | None = None) -> Inspection:
    frame = PARTS.trigger("cam").frame(np.full((64, 64), 100, np.uint8))
    regions = Regions(score=0.5, boxes=(Box(5, 5, 30, 30, 0.5, 12),), summary=MapSummary(0.5, 0.1, 0.5, 12),
                      model="m")
    v = Verdict(defective=False, p_defective=p, confidence=max(p, 1 - p), decided_by="vlm", model="m",
                details={"vote_share": share})
    decision = Policy(PolicyConfig()).decide(frame, v, {"regions": 1.0, "judge": 0.5, "total": 2.0})
    return Inspection(frame, decision, regions, v)


def test_the_passes_kept_are_the_passes_the_queue_lists(tmp_path):
    cfg = RejectImagesConfig(review_confidence=0.9, review_split=0.2, audit_share=0.1)
    store = Store(tmp_path / "i.db", RejectImages(cfg, tmp_path / "rejects"))
    parts = [a_pass(0.3), a_pass(0.05, share=0.4)] + [a_pass(0.01, share=0.0) for _ in range(60)]
    for ins in parts:
        store.emit(ins)
    rows = {r["part_id"]: r for r in store.db[TABLE].rows}
    queue = build_queue(store.db, QueueSettings(cfg.review_confidence, cfg.review_split, cfg.audit_share))
    listed = {r["part_id"]: r["why"] for r in queue["queue"]}
    kept = {pid for pid, r in rows.items() if r["image_path"]}
    assert kept == set(listed)
    uncertain = {parts[0].frame.part_id, parts[1].frame.part_id}
    assert {p for p, why in listed.items() if why == "uncertain"} == uncertain
    audited = {p for p, why in listed.items() if why == "audit"}
    assert audited == {p for p in rows if p not in uncertain and audit_draw(p) < 0.1}
    assert all(frame_path_for(rows[p]["image_path"]).is_file() for p in kept)
    store.close()
    none = RejectImagesConfig(review_confidence=0.0, audit_share=0.0)
    s2 = Store(tmp_path / "j.db", RejectImages(none, tmp_path / "r2"))
    s2.emit(a_pass(0.3))
    assert [r["image_path"] for r in s2.db[TABLE].rows] == [None]
    s2.close()
