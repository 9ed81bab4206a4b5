import json
import sqlite3

import numpy as np
import pytest
from structlog.testing import capture_logs

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Box, Inspection, MapSummary, Regions, Verdict
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.mqtt.outbox import Outbox, count_pending, next_batch
from edge_inspector.outputs.store import SCHEMA_VERSION, TABLE, Store
from edge_inspector.versions import Versions
from edge_inspector.policy import Policy, PolicyConfig

VERSIONS = Versions(station="s1", model="mh", config="ch", recipe="pcb", recipe_version="abc")
PARTS = PartFactory(1.0)


def inspection(p=0.9):
    frame = PARTS.trigger("cam").frame(np.full((32, 32), 100, np.uint8))
    regions = Regions(score=2.0, boxes=(Box(5, 5, 30, 30, 2.0, 12),), summary=MapSummary(2, 0.1, 0.5, 12),
                      model="m")
    v = Verdict(defective=p > 0.5, p_defective=p, confidence=max(p, 1 - p), decided_by="regions", model="m",
                defect_type="scratch" if p > 0.5 else None)
    decision = Policy(PolicyConfig()).decide(frame, v, {"regions": 1.0, "total": 2.5})
    return Inspection(frame, decision, regions, v)


@pytest.fixture
def outbox():
    return Outbox("pre/s1/result", lambda: VERSIONS, max_rows=10)


@pytest.fixture
def store(tmp_path, outbox):
    s = Store(tmp_path / "i.db", writers=[outbox])
    yield s
    s.close()


def test_the_result_message_is_written_with_the_row(store, outbox):
    ins = inspection()
    store.emit(ins)
    (msg,) = next_batch(store.db.conn, 0, 10)
    body = json.loads(msg.payload)
    assert (msg.part_id, msg.topic) == (ins.frame.part_id, "pre/s1/result")
    assert body["id"] == ins.frame.part_id and body["decision"] == "REJECT" and body["reason"] == "defect"
    assert body["confidence"] == 0.9 and body["defect_type"] == "scratch"
    assert body["regions"][0]["box"] == [5, 5, 30, 30] and body["timings_ms"]["total"] == 2.5
    versions = (body["model"], body["config"], body["recipe"], body["recipe_version"])
    assert versions == ("mh", "ch", "pcb", "abc")
    assert body["station"] == "s1" and abs(body["decided_time"] - msg.decided) < 1e-3
    assert outbox.pending == 1 and outbox.written == 1


class Broken:
    name = "broken"

    def migrate(self, db, path):
        pass

    def write(self, db, ins):
        raise OSError("disk on fire")


def test_row_and_message_commit_together_or_not_at_all(tmp_path, outbox):
    s = Store(tmp_path / "i.db", writers=[outbox, Broken()])
    outputs = Outputs([s])
    outputs.emit(inspection())
    assert outputs.failures["store"] == 1
    assert s.db[TABLE].count == 0 and count_pending(s.db.conn) == 0  # rolled back, both
    s.writers = [outbox]
    outputs.emit(inspection())
    assert s.db[TABLE].count == 1 and count_pending(s.db.conn) == 1
    s.close()


def test_a_sigkill_after_commit_keeps_both(tmp_path, outbox):
    s = Store(tmp_path / "i.db", writers=[outbox])
    for _ in range(3):
        s.emit(inspection())
    # no close: a second connection (a restarted daemon) sees what was committed
    conn = sqlite3.connect(tmp_path / "i.db")
    rows = {r[0] for r in conn.execute("SELECT part_id FROM inspections")}
    msgs = {r[0] for r in conn.execute("SELECT part_id FROM outbox WHERE delivered IS NULL")}
    assert rows == msgs and len(rows) == 3
    conn.close()
    s.close()


def test_in_order_batches_delivered_and_pruned(store, outbox):
    parts = [inspection() for _ in range(5)]
    for ins in parts:
        store.emit(ins)
    conn = store.db.conn
    batch = next_batch(conn, 0, 3)
    assert [m.part_id for m in batch] == [p.frame.part_id for p in parts[:3]]
    assert [m.part_id for m in next_batch(conn, batch[-1].id, 10)] == [p.frame.part_id for p in parts[3:]]
    assert outbox.mark_delivered(conn, [batch[0].id, batch[2].id]) == 2
    assert outbox.mark_delivered(conn, [batch[0].id]) == 0  # a second PUBACK counts once
    assert outbox.pending == 3 and outbox.delivered == 2
    assert [m.part_id for m in next_batch(conn, 0, 10)] == [parts[i].frame.part_id for i in (1, 3, 4)]
    assert outbox.prune(conn, keep_s=3600) == 0
    assert outbox.prune(conn, keep_s=0) == 2
    assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 3


def test_the_cap_drops_the_oldest_undelivered_with_a_counter_and_a_log_line(store, outbox):
    parts = [inspection() for _ in range(25)]
    with capture_logs() as logs:
        for ins in parts:
            store.emit(ins)
    assert outbox.pending == 10 and outbox.dropped == 15
    kept = [m.part_id for m in next_batch(store.db.conn, 0, 100)]
    assert kept == [p.frame.part_id for p in parts[15:]]
    assert store.db[TABLE].count == 25  # the inspection rows are all there
    full = [e for e in logs if e["event"] == "mqtt_outbox_full"]
    assert len(full) == 1 and full[0]["cap"] == 10


def test_nan_becomes_null_not_a_failed_row(store):
    ins = inspection()
    ins.decision.timings_ms["judge"] = float("nan")
    store.emit(ins)
    body = json.loads(next_batch(store.db.conn, 0, 1)[0].payload)
    assert body["timings_ms"]["judge"] is None


def test_each_result_is_stamped_with_the_versions_in_force(tmp_path):
    current = {"v": VERSIONS}
    outbox = Outbox("pre/s1/result", lambda: current["v"], max_rows=10)
    s = Store(tmp_path / "i.db", writers=[outbox])
    s.emit(inspection())
    current["v"] = Versions("s1", "mh2", "ch2", "pcb", "def")  # a reload swapped the stages in
    s.emit(inspection())
    bodies = [json.loads(m.payload) for m in next_batch(s.db.conn, 0, 10)]
    assert [b["recipe_version"] for b in bodies] == ["abc", "def"]
    assert [b["model"] for b in bodies] == ["mh", "mh2"]
    s.close()


def test_the_outbox_owns_its_table_and_an_existing_v1_database_gains_it(tmp_path, monkeypatch):
    from edge_inspector.outputs import store as store_mod

    path = tmp_path / "i.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    Store(path).close()  # a v1 program: no outbox
    monkeypatch.undo()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO inspections (part_id, outcome, action, reason) VALUES ('p', 'PASS', 'PASS', 'ok')")
    outbox = Outbox("t", lambda: VERSIONS, 10)
    s = Store(path, writers=[outbox])
    assert (tmp_path / "i.db.bak-v1").exists()
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "outbox" in s.db.table_names() and s.db[TABLE].count == 1
    assert s.db.execute(f"SELECT gate FROM {TABLE}").fetchall() == [(None,)]
    s.close()
    outbox_source = __import__("inspect").getsource(store_mod)
    assert "mqtt" not in outbox_source.split('"""', 2)[2]  # the store's code knows no outbox


def test_a_newer_outbox_schema_is_refused(tmp_path):
    from edge_inspector.errors import StartupError

    s = Store(tmp_path / "i.db", writers=[Outbox("t", lambda: VERSIONS, 10)])
    s.db.execute("UPDATE schema_owners SET version = 9 WHERE owner = 'outbox'")
    s.close()
    with pytest.raises(StartupError, match="outbox schema is version 9"):
        Store(tmp_path / "i.db", writers=[Outbox("t", lambda: VERSIONS, 10)])


def test_a_late_gate_answer_goes_out_on_the_gate_topic_with_the_rows_correction(tmp_path):
    """The result went out ``unconfirmed``; when the gate's answer comes later, the row is corrected
    and, in the same transaction, a message on the gate topic says what the gate did (consumers
    de-duplicate results on the part id: the result itself is not sent again)."""
    from dataclasses import replace

    from edge_inspector.envelope import Action

    outbox = Outbox("pre/s1/result", lambda: VERSIONS, max_rows=10, gate_topic="pre/s1/gate")
    store = Store(tmp_path / "i.db", writers=[outbox])
    ins = inspection(0.1)
    ins = replace(ins, decision=replace(ins.decision, gate="unconfirmed"))
    answered = inspection(0.1)
    answered = replace(answered, decision=replace(answered.decision, gate="applied"))
    store.emit(ins)
    store.emit(answered)
    store.regate(ins.frame.part_id, Action.REJECT, "failsafe_deadline")
    store.regate(ins.frame.part_id, Action.PASS, "applied")  # already corrected: nothing more
    store.regate(answered.frame.part_id, Action.REJECT, "failsafe_deadline")  # answered in time
    store.regate("elsewhere", Action.REJECT, "failsafe_deadline")  # not this store's part
    msgs = next_batch(store.db.conn, 0, 10)
    assert [m.topic for m in msgs] == ["pre/s1/result", "pre/s1/result", "pre/s1/gate"]
    body = json.loads(msgs[2].payload)
    assert msgs[2].part_id == ins.frame.part_id
    assert {k: body[k] for k in ("v", "station", "id", "action", "gate", "was")} == {
        "v": 1, "station": "s1", "id": ins.frame.part_id, "action": "REJECT", "gate": "failsafe_deadline",
        "was": "unconfirmed"}
    assert outbox.pending == 3 and store.regated == 1
    row = store.db.conn.execute(f"SELECT action, gate FROM {TABLE} WHERE part_id = ?",
                                (ins.frame.part_id,)).fetchone()
    assert row == ("REJECT", "failsafe_deadline")
    store.close()


def test_a_gate_message_that_cannot_be_written_leaves_the_row_unconfirmed(tmp_path):
    """The correction and its message are one transaction: both or neither."""
    from dataclasses import replace

    from edge_inspector.envelope import Action

    class Failing(Outbox):
        def regate(self, db, part_id, action, gate):
            raise sqlite3.OperationalError("disk I/O error")

    store = Store(tmp_path / "i.db", writers=[Failing("t", lambda: VERSIONS, 10, gate_topic="g")])
    ins = inspection(0.1)
    store.emit(replace(ins, decision=replace(ins.decision, gate="unconfirmed")))
    with pytest.raises(sqlite3.OperationalError):
        store.regate(ins.frame.part_id, Action.REJECT, "failsafe_deadline")
    row = store.db.conn.execute(f"SELECT action, gate FROM {TABLE} WHERE part_id = ?",
                                (ins.frame.part_id,)).fetchone()
    assert row == ("PASS", "unconfirmed") and store.regated == 0
    store.close()
