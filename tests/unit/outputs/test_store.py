import json
import sqlite3

import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Box, Inspection, MapSummary, Outcome, Reason, Regions
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.base import Output
from edge_inspector.outputs.images import RejectImages, RejectImagesConfig
from edge_inspector.outputs.store import SCHEMA_VERSION, TABLE, Store, connect, recent, totals
from edge_inspector.policy import Policy, PolicyConfig


def inspection(outcome=Outcome.REJECT, part=None):
    trig = PartFactory(1.0).trigger("cam")
    frame = trig.frame(np.full((64, 64), 100, np.uint8))
    regions = Regions(score=2.0, boxes=(Box(5, 5, 30, 30, 2.0, 12),), summary=MapSummary(2, 0.1, 0.5, 12),
                      model="m")
    policy = Policy(PolicyConfig())
    if outcome is Outcome.NO_READ:
        decision = policy.no_read(frame, Reason.JUDGE_ERROR, "boom", {"regions": 1.0, "total": 2.0})
    else:
        from edge_inspector.envelope import Verdict
        p = 0.9 if outcome is Outcome.REJECT else 0.1
        v = Verdict(defective=p > 0.5, p_defective=p, confidence=max(p, 1 - p), decided_by="regions", model="m")
        decision = policy.decide(frame, v, {"regions": 1.0, "judge": 0.5, "total": 2.0})
    return Inspection(frame, decision, regions)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db" / "i.db", RejectImages(RejectImagesConfig(), tmp_path / "rejects"), "mh", "ch")
    yield s
    s.close()


def test_one_row_per_inspection_with_stage_times_and_hashes(store):
    store.emit(inspection(Outcome.REJECT))
    store.emit(inspection(Outcome.PASS))
    rows = list(store.db[TABLE].rows)
    assert [r["outcome"] for r in rows] == ["REJECT", "PASS"]
    r = rows[0]
    assert json.loads(r["boxes"])[0]["box"] == [5, 5, 30, 30]
    assert r["t_regions_ms"] == 1.0 and r["t_total_ms"] == 2.0
    assert (r["model_hash"], r["config_hash"]) == ("mh", "ch")
    assert r["image_path"] and rows[1]["image_path"] is None  # only rejects keep an image


def test_wal_and_schema_version(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_same_part_twice_keeps_one_row(store):
    ins = inspection()
    store.emit(ins)
    store.emit(ins)
    assert store.db[TABLE].count == 1


def test_totals_and_recent(store):
    for o in (Outcome.REJECT, Outcome.PASS, Outcome.PASS, Outcome.NO_READ):
        store.emit(inspection(o))
    db = connect(store.path, readonly=True)
    t = totals(db)
    assert (t["parts"], t["PASS"], t["REJECT"], t["NO-READ"], t["reject_rate"]) == (4, 2, 1, 1, 0.25)
    assert [r["outcome"] for r in recent(db, 2)] == ["NO-READ", "PASS"]


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "i.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(path, None, "m", "c")


def test_an_upgrade_backs_up_the_old_file(tmp_path, monkeypatch):
    from edge_inspector.outputs import store as store_mod

    path = tmp_path / "i.db"
    Store(path, None, "m", "c").close()

    def v2(db):
        db[TABLE].add_column("operator", str)

    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS + [v2])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    s = Store(path, None, "m", "c")
    assert (tmp_path / f"i.db.bak-v{SCHEMA_VERSION}").exists()
    assert "operator" in s.db[TABLE].columns_dict
    s.close()


def test_one_failing_output_does_not_stop_the_others(store):
    class Broken(Output):
        name = "broken"

        def emit(self, inspection):
            raise OSError("disk on fire")

    outputs = Outputs([Broken(), store])
    outputs.emit(inspection())
    assert store.db[TABLE].count == 1
    assert outputs.failures == {"broken": 1, "store": 0}


def test_images_pruned_by_age_and_size(tmp_path):
    import os

    images = RejectImages(RejectImagesConfig(max_age_days=1, max_total_mb=0.001), tmp_path / "r")
    paths = [images.save(inspection()) for _ in range(3)]
    assert all(paths)
    old = paths[0]
    os.utime(old, (0, 0))
    removed = images.prune()
    assert removed >= 1 and not os.path.exists(old)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path / "r") for f in fs)
    assert total <= 0.001 * 1024 * 1024


def test_a_write_failure_skips_the_image_not_the_row(tmp_path, monkeypatch):
    from pathlib import Path

    s = Store(tmp_path / "i.db", RejectImages(RejectImagesConfig(), tmp_path / "r"), "m", "c")

    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    s.emit(inspection())
    assert s.db[TABLE].count == 1 and s.images.skipped_disk_full == 1
    s.close()


class FailsafeGate(Output):
    """A PLC link whose bridge rejected the part on its own (issue 13, item 4)."""

    name = "plc"

    def __init__(self, fail_emit=False):
        self.fail_emit = fail_emit

    def emit(self, inspection):
        if self.fail_emit:
            raise RuntimeError("not armed")

    def gate(self, inspection):
        from dataclasses import replace

        from edge_inspector.envelope import Action

        return replace(inspection, decision=replace(inspection.decision, action=Action.REJECT,
                                                    gate="failsafe_deadline"))


@pytest.mark.parametrize("fail_emit", [False, True])
def test_the_outputs_after_a_gate_record_what_the_gate_did(store, fail_emit):
    from edge_inspector.outputs.mqtt.topics import Versions, result_payload

    seen = []

    class Spy(Output):
        name = "spy"

        def emit(self, inspection):
            seen.append(inspection)

    ins = inspection(Outcome.PASS)
    Outputs([FailsafeGate(fail_emit), store, Spy()]).emit(ins)
    row = store.db.execute(f"SELECT outcome, action, gate, reason FROM {TABLE}").fetchone()
    assert row == ("PASS", "REJECT", "failsafe_deadline", "ok")  # the station said PASS; the gate rejected
    payload = json.loads(result_payload(seen[0], Versions("s", "m", "c"), 0.0))
    assert (payload["action"], payload["gate"], payload["decision"]) == ("REJECT", "failsafe_deadline", "PASS")


def test_without_a_gate_the_row_has_no_gate(store):
    Outputs([store]).emit(inspection(Outcome.REJECT))
    assert store.db.execute(f"SELECT action, gate FROM {TABLE}").fetchone() == ("REJECT", None)
