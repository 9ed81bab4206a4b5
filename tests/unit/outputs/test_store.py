import json
import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Box, Inspection, MapSummary, Outcome, Reason, Regions
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.base import Output
from edge_inspector.outputs.images import RejectImages, RejectImagesConfig
from edge_inspector.errors import StartupError
from edge_inspector.outputs.store import SCHEMA_VERSION, TABLE, DuplicatePart, Store, connect, recent, totals
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.versions import Versions

VERSIONS = Versions("s1", "mh", "ch", "pcb", "0123abcd4567")


PARTS = PartFactory(1.0)  # one factory: its part ids never repeat (run tags made in one second could)


def inspection(outcome=Outcome.REJECT, part=None):
    trig = PARTS.trigger("cam")
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
    s = Store(tmp_path / "db" / "i.db", RejectImages(RejectImagesConfig(audit_share=0.0), tmp_path / "rejects"), lambda: VERSIONS)  # no pass sampled for audit
    yield s
    s.close()


def test_one_row_per_inspection_with_stage_times_hashes_and_recipe(store):
    store.emit(inspection(Outcome.REJECT))
    store.emit(inspection(Outcome.PASS))
    rows = list(store.db[TABLE].rows)
    assert [r["outcome"] for r in rows] == ["REJECT", "PASS"]
    r = rows[0]
    assert json.loads(r["boxes"])[0]["box"] == [5, 5, 30, 30]
    assert r["t_regions_ms"] == 1.0 and r["t_total_ms"] == 2.0
    assert (r["model_hash"], r["config_hash"]) == ("mh", "ch")
    assert (r["recipe"], r["recipe_version"]) == ("pcb", "0123abcd4567")
    assert r["image_path"] and rows[1]["image_path"] is None  # only rejects keep an image


def test_wal_and_schema_version(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_part_id_collision_is_refused_and_the_first_inspection_kept(store):
    first = inspection(Outcome.REJECT)
    store.emit(first)
    image = store.db.execute(f"SELECT image_path FROM {TABLE}").fetchone()[0]
    before = open(image, "rb").read()
    second = inspection(Outcome.NO_READ)
    second = type(second)(replace(second.frame, part_id=first.frame.part_id), second.decision)
    with pytest.raises(DuplicatePart, match="is in the store already"):
        store.emit(second)
    rows = list(store.db[TABLE].rows)
    assert len(rows) == 1 and rows[0]["outcome"] == "REJECT" and rows[0]["reason"] == "defect"
    assert open(image, "rb").read() == before  # its image was not replaced either
    assert store.health()["refused"] == 1


def test_the_store_makes_no_table_of_another_owner(tmp_path):
    s = Store(tmp_path / "i.db")
    assert s.db.table_names() == [TABLE]  # the outbox's table is the outbox's (outputs/mqtt)
    s.close()


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
    with pytest.raises(StartupError, match="newer than this program") as err:
        Store(path)
    assert err.value.exit_code == 3


def test_an_upgrade_backs_up_the_old_file(tmp_path, monkeypatch):
    from edge_inspector.outputs import store as store_mod

    path = tmp_path / "i.db"
    Store(path).close()

    def v_next(db):
        db[TABLE].add_column("operator", str)

    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS + [v_next])
    s = Store(path)
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


def test_a_version_2_file_is_upgraded_with_its_outbox_kept(tmp_path):
    from edge_inspector.outputs.mqtt.outbox import Outbox

    path = tmp_path / "i.db"
    conn = sqlite3.connect(path)  # what a v2 program left: inspections, the outbox, user_version 2
    conn.execute("CREATE TABLE inspections (id INTEGER PRIMARY KEY, part_id TEXT NOT NULL, outcome TEXT "
                 "NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL, trigger_time FLOAT, image_path TEXT)")
    conn.execute("CREATE UNIQUE INDEX idx_part ON inspections(part_id)")
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, part_id TEXT NOT NULL, topic "
                 "TEXT NOT NULL, payload BLOB NOT NULL, decided REAL NOT NULL, created REAL NOT NULL, "
                 "delivered REAL)")
    conn.execute("INSERT INTO outbox (part_id, topic, payload, decided, created) VALUES ('p', 't', x'00', 1, 1)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    outbox = Outbox("t", lambda: VERSIONS, 10)
    s = Store(path, None, lambda: VERSIONS, writers=[outbox])
    assert (tmp_path / "i.db.bak-v2").exists() and "recipe_version" in s.db[TABLE].columns_dict
    assert s.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1  # kept, not recreated
    assert s.db.execute("SELECT version FROM schema_owners WHERE owner='outbox'").fetchone()[0] == 1
    s.close()


def test_a_write_failure_skips_the_image_not_the_row(tmp_path, monkeypatch):
    from pathlib import Path

    s = Store(tmp_path / "i.db", RejectImages(RejectImagesConfig(), tmp_path / "r"))

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


def test_a_gate_answer_after_the_record_corrects_the_unconfirmed_row_only(store):
    """What the gate did is what is recorded, if late: the row written 'unconfirmed' is corrected
    before the next part (or at close); a row the gate had answered for is never touched."""
    from edge_inspector.envelope import Action

    class LateGate(Output):
        name = "plc"

        def __init__(self):
            self.late = []

        def emit(self, inspection):
            pass

        def gate(self, inspection):
            how = "applied" if inspection is answered else "unconfirmed"
            return replace(inspection, decision=replace(inspection.decision, gate=how))

        def late_gates(self):
            late, self.late = self.late, []
            return late

    gate = LateGate()
    outputs = Outputs([gate, store], owned=[store])
    first, second, answered = inspection(Outcome.PASS), inspection(Outcome.PASS), inspection(Outcome.PASS)
    outputs.emit(answered)
    outputs.emit(first)
    gate.late = [(first.frame.part_id, Action.REJECT, "failsafe_deadline"), ("elsewhere", Action.PASS, "applied"),
                 (answered.frame.part_id, Action.REJECT, "failsafe_deadline")]
    outputs.emit(second)
    gate.late = [(second.frame.part_id, Action.PASS, "applied")]
    outputs.close()  # the last part's answer too
    conn = sqlite3.connect(store.path)
    rows = conn.execute(f"SELECT part_id, outcome, action, gate FROM {TABLE} ORDER BY id").fetchall()
    conn.close()
    assert rows == [(answered.frame.part_id, "PASS", "PASS", "applied"),
                    (first.frame.part_id, "PASS", "REJECT", "failsafe_deadline"),
                    (second.frame.part_id, "PASS", "PASS", "applied")]
    assert store.regated == 2
