"""The labels table: one owner, a v1 file upgraded with its rows readable, validation, latest in force."""

from __future__ import annotations

import pytest

from edge_inspector.outputs import schema
from edge_inspector.outputs.store import TABLE, connect
from edge_inspector.outputs.store import migrate as migrate_store
from edge_inspector.review import labels


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "inspections.db"
    db = connect(path)
    migrate_store(db, path)
    for pid in ("a", "b", "c"):
        db[TABLE].insert({"part_id": pid, "outcome": "REJECT", "action": "reject", "reason": "defect"})
    yield db, path
    db.conn.close()


def test_a_v1_table_is_upgraded_and_its_rows_read_as_labels(db):
    d, path = db
    schema.migrate(d, path, labels.OWNER, labels.MIGRATIONS[:1])  # the API's first table
    d[labels.TABLE].insert({"part_id": "a", "verdict": "defect", "defect_type": "short", "reviewer": "ann",
                            "note": "", "created": 1.0})
    d[labels.TABLE].insert({"part_id": "b", "verdict": "false_alarm", "defect_type": None, "reviewer": "",
                            "note": "dust", "created": 2.0})
    assert labels.labels_for(d, "a")[0]["label"] == "defective"  # readable before the upgrade
    assert labels.migrate(d, path) == labels.SCHEMA_VERSION == 2
    assert (path.parent / f"{path.name}.bak-labels-v1").exists()  # a copy before the upgrade
    got = labels.latest(d)
    assert {k: (v["label"], v["defect_type"], v["reviewer"], v["note"]) for k, v in got.items()} == {
        "a": ("defective", "short", "ann", ""), "b": ("good", None, "", "dust")}


def test_a_label_records_who_when_and_the_last_one_is_in_force(db):
    d, path = db
    labels.migrate(d, path)
    first = labels.add_label(d, "a", "defective", "short", reviewer="ann", note="bridge", via="cli")
    assert first["verdict"] == "defect" and first["created"] > 0
    labels.add_label(d, "a", "good", reviewer="bob", via="http")
    assert [r["label"] for r in labels.labels_for(d, "a")] == ["defective", "good"]  # history kept
    now = labels.latest(d)["a"]
    assert (now["label"], now["reviewer"], now["via"], now["verdict"]) == (
        "good", "bob", "http", "false_alarm")


def test_bad_labels_are_refused_with_what_was_wrong(db):
    d, path = db
    labels.migrate(d, path)
    with pytest.raises(labels.UnknownPart):
        labels.add_label(d, "nope", "good")
    with pytest.raises(ValueError, match="label must be"):
        labels.add_label(d, "a", "maybe")
    with pytest.raises(ValueError, match="defective only"):
        labels.add_label(d, "a", "good", "short")
    with pytest.raises(ValueError, match="snake_case"):
        labels.add_label(d, "a", "defective", "short!")
    assert labels.add_label(d, "b", "defective", " Pin-hole ")["defect_type"] == "pin_hole"
    assert labels.add_label(d, "c", "defective", "Spurious copper")["defect_type"] == "spurious_copper"
    assert set(labels.latest(d)) == {"b", "c"}
