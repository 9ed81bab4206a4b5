"""The review queue's order: NO-READs, rejects, uncertain passes, then the audit sample; labelled out."""

from __future__ import annotations

import pytest

from edge_inspector.outputs.store import TABLE, connect
from edge_inspector.outputs.store import migrate as migrate_store
from edge_inspector.review import labels
from edge_inspector.review.queue import QueueSettings, audit_draw, build_queue


def row(pid, outcome, t, p=None, conf=None, share=None):
    return {"part_id": pid, "outcome": outcome, "action": "reject" if outcome != "PASS" else "pass",
            "reason": {"PASS": "ok", "REJECT": "defect", "NO-READ": "judge_error"}[outcome],
            "trigger_time": t,
            "p_defective": p, "confidence": conf, "vote_share": share}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "inspections.db"
    db = connect(path)
    migrate_store(db, path)
    labels.migrate(db, path)
    yield db
    db.conn.close()


def confident_passes(n):
    return [f"pass-{i}" for i in range(n)]


def test_most_useful_first_and_labelled_parts_left_out(db):
    passes = confident_passes(200)
    audited = sorted((p for p in passes if audit_draw(p) < 0.05), key=audit_draw)
    assert 0 < len(audited) < 40  # the sample is small, and not empty
    rows = [row(p, "PASS", 10.0 + i, 0.01, 0.99, 0.0) for i, p in enumerate(passes)]
    rows += [row("rej-sure", "REJECT", 1.0, 0.99, 0.99), row("rej-close", "REJECT", 2.0, 0.55, 0.55),
             row("nr-old", "NO-READ", 3.0), row("nr-new", "NO-READ", 4.0),
             row("low-conf", "PASS", 5.0, 0.3, 0.7, 0.0), row("split", "PASS", 6.0, 0.1, 0.9, 0.4),
             row("near-coin", "PASS", 7.0, 0.45, 0.55), row("labelled-reject", "REJECT", 8.0, 0.9, 0.9),
             row("labelled-split", "PASS", 9.0, 0.2, 0.95, 0.4)]
    for r in rows:
        db[TABLE].insert(r)
    labels.add_label(db, "labelled-reject", "defective", "short")
    labels.add_label(db, "labelled-split", "good")
    labels.add_label(db, audited[0], "good")
    out = build_queue(db, QueueSettings(low_confidence=0.9, split=0.2, audit_share=0.05))
    got = [(r["why"], r["part_id"]) for r in out["queue"]]
    assert got[:7] == [("no_read", "nr-new"), ("no_read", "nr-old"), ("reject", "rej-close"),
                       ("reject", "rej-sure"), ("uncertain", "near-coin"), ("uncertain", "low-conf"),
                       ("uncertain", "split")]
    assert got[7:] == [("audit", p) for p in audited[1:]]  # the audit sample last, labelled one out
    assert out["counts"] == {"no_read": 2, "reject": 2, "uncertain": 3, "audit": len(audited) - 1}
    assert out["labelled"] == 3
    assert [r["part_id"] for r in build_queue(db, limit=3)["queue"]] == ["nr-new", "nr-old", "rej-close"]


def test_the_audit_sample_is_the_same_on_every_run_and_grows_with_its_share(db):
    passes = confident_passes(300)
    for i, p in enumerate(passes):
        db[TABLE].insert(row(p, "PASS", float(i), 0.0, 1.0))
    small = [r["part_id"] for r in build_queue(db, QueueSettings(audit_share=0.02))["queue"]]
    again = [r["part_id"] for r in build_queue(db, QueueSettings(audit_share=0.02))["queue"]]
    large = [r["part_id"] for r in build_queue(db, QueueSettings(audit_share=0.2))["queue"]]
    assert small == again and set(small) < set(large)
    assert 20 < len(large) < 100
    assert build_queue(db, QueueSettings(audit_share=0.0))["queue"] == []
