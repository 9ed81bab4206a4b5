"""The judge's evidence (p_logit, vote share, valid and invalid votes, prefix-cache hit, constrained) in
each SQLite row and MQTT result; a v4 file gains the columns, its old rows keep NULL."""

import json
import sqlite3

import numpy as np

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Box, Inspection, MapSummary, Regions, Verdict, Vote
from edge_inspector.outputs import store as store_mod
from edge_inspector.outputs.mqtt.topics import result_payload
from edge_inspector.outputs.store import EVIDENCE, TABLE, Store, connect, recent
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.versions import Versions

VERSIONS = Versions("s1", "mh", "ch", "pcb", "0123abcd4567")
DETAILS = {"p_logit": 0.8125, "decision_mass": 0.99, "vote_share": 0.6, "valid_votes": 5, "invalid_votes": 0,
           "prefix_cache_hit": True, "constrained": True, "timings_ms": {"total_ms": 3.0}}


PARTS = PartFactory(1.0)  # one factory: its part ids never repeat (run tags made in one second could)


def inspection(details, decided_by="vlm"):
    frame = PARTS.trigger("cam").frame(np.full((64, 64), 100, np.uint8))
    regions = Regions(score=2.0, boxes=(Box(5, 5, 30, 30, 2.0, 12),), summary=MapSummary(2, 0.1, 0.5, 12),
                      model="m")
    votes = tuple(Vote(defective=i < 3, defect_type="short" if i < 3 else None) for i in range(5))
    v = Verdict(defective=True, p_defective=0.7, confidence=0.7, decided_by=decided_by, model="m",
                votes=votes if decided_by == "vlm" else (), details=details)
    decision = Policy(PolicyConfig()).decide(frame, v, {"judge": 1.0, "total": 2.0})
    return Inspection(frame, decision, regions, v)


def test_each_row_carries_the_judges_evidence_and_a_part_without_a_vlm_null(tmp_path):
    s = Store(tmp_path / "i.db", None, lambda: VERSIONS)
    s.emit(inspection(DETAILS))
    s.emit(inspection({"score": 2.0}, decided_by="regions"))  # a cascade pass: no model, no evidence
    vlm, cascade = s.db.execute(f"SELECT {', '.join(EVIDENCE)} FROM {TABLE} ORDER BY id").fetchall()
    assert vlm == (0.8125, 0.6, 5, 0, 1, 1)
    assert cascade == (None,) * len(EVIDENCE)
    first = recent(connect(s.path, readonly=True), 2)[1]
    assert (first["vote_share"], first["valid_votes"], first["invalid_votes"]) == (0.6, 5, 0)  # status
    s.close()


def test_the_mqtt_result_carries_the_same_evidence():
    body = json.loads(result_payload(inspection(DETAILS), VERSIONS, 1.0))
    assert {k: body["judge"][k] for k in EVIDENCE} == {k: DETAILS[k] for k in EVIDENCE}
    assert [v["defective"] for v in body["votes"]] == [True, True, True, False, False]
    assert body["recipe_version"] == "0123abcd4567"


def test_a_version_4_file_gains_the_evidence_columns_after_a_backup(tmp_path, monkeypatch):
    path = tmp_path / "i.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:4])  # what a v4 program wrote
    monkeypatch.setattr(store_mod, "evidence_of", lambda details: {})
    row_for = store_mod.row_for  # nor the later columns (v7: model_version)
    monkeypatch.setattr(store_mod, "row_for", lambda *a: {k: v for k, v in row_for(*a).items()
                                                          if k != "model_version"})
    old = Store(path, None, lambda: VERSIONS)
    old.emit(inspection({}, decided_by="regions"))
    old.close()
    monkeypatch.undo()
    s = Store(path, None, lambda: VERSIONS)
    assert (tmp_path / "i.db.bak-v4").exists()
    assert set(EVIDENCE) <= set(s.db[TABLE].columns_dict)
    s.emit(inspection(DETAILS))
    rows = sqlite3.connect(path).execute(f"SELECT valid_votes, p_logit FROM {TABLE} ORDER BY id").fetchall()
    assert rows == [(None, None), (5, 0.8125)]
    s.close()
