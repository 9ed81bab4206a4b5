"""The model registry: import, list, the atomic current pointer, rollback, the promotion rules, and
the model version each row and MQTT result is stamped with.

The checkpoints here are checked (``inspect_checkpoint``: config, tokenizer, processor, safetensors
header) but never loaded; tests/integration/learn loads real tiny models through the judge."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.cli import main
from edge_inspector.config import load_config
from edge_inspector.envelope import Inspection, MapSummary, Regions, Verdict
from edge_inspector.errors import ConfigError
from edge_inspector.learn import models as models_mod
from edge_inspector.learn.evaluation import compare
from edge_inspector.learn.models import ModelError, Registry, promotion_refusals, version_of_weights
from edge_inspector.outputs.mqtt.topics import result_payload
from edge_inspector.outputs.store import TABLE, Store
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.versions import Versions, versions_of
from tests.unit.learn.fake_runs import checkpoint, make_run


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "models")


@pytest.fixture
def config(tmp_path, station_config):
    return station_config(models={"dir": str(tmp_path / "models")})


def cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def evaluated(reg, name, against, missed=(), cur_overkill=0.0, cand_overkill=0.0, good=4, defective=4):
    reg.set_metrics(name, {
        "against": against, "recording": "/rec/manifest.jsonl",
        "current": {"overkill_rate": cur_overkill, "good": good, "defective": defective},
        "candidate": {"overkill_rate": cand_overkill, "good": good, "defective": defective},
        "missed_caught_by_current": list(missed), "new_overkill": [],
        "overkill_delta": round(cand_overkill - cur_overkill, 4), "per_part": []})


# --- import, list --------------------------------------------------------------------------------


def test_import_copies_the_run_into_a_version_with_its_manifest(reg, tmp_path):
    v = reg.import_run(make_run(tmp_path, awq=True, parity={"ok": True, "max_diff": 0.01}))
    assert v.id == "v1" and v.weights == reg.root / "v1" / "awq"  # awq/ is served when there is one
    m = v.manifest
    assert (m["base"], m["dataset_hash"], m["adapter"], m["steps"], m["final_loss"]) == \
        ("/models/qwen-base", "d1", "adapter", 40, 0.7)
    assert m["parity"] == {"ok": True, "max_diff": 0.01} and m["metrics"] is None and m["awq"] is True
    assert m["fingerprint"].startswith("qwen2_5_vl-awq:") and m["created"].endswith("Z")
    for part in ("merged/config.json", "awq/model.safetensors", "adapter/adapter_config.json", "run.json"):
        assert (v.path / part).is_file() and not (v.path / part).is_symlink()
    w = reg.import_run(make_run(tmp_path, "run2"), name="lora-b")
    assert w.weights.name == "merged" and [x.id for x in reg.versions()] == ["v1", "lora-b"]
    assert reg.import_run(make_run(tmp_path, "run3")).id == "v2"
    assert [e["action"] for e in reg.history()] == ["import"] * 3
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".importing")]


def test_a_linked_import_and_a_plain_checkpoint(reg, tmp_path):
    v = reg.import_run(make_run(tmp_path), link=True)
    assert (v.path / "merged").is_symlink() and v.manifest["linked"] is True
    assert version_of_weights(v.weights) == "v1"  # found through the version's folder, not the link
    base = reg.import_run(checkpoint(tmp_path / "base-ckpt"), name="base")
    assert base.weights == reg.root / "base" / "model" and base.manifest["kind"] == "checkpoint"
    assert base.manifest["base"] == str(tmp_path / "base-ckpt") and base.manifest["adapter"] is None


@pytest.mark.parametrize("case, expect", [
    ("unfinished", "did not finish"), ("no-merged", "no merged/ or awq/"), ("nothing", "neither a training run"),
    ("broken", "corrupt safetensors file model.safetensors"), ("missing", "no such directory")])
def test_an_import_that_cannot_work_is_refused_with_the_reason(reg, tmp_path, case, expect):
    run = tmp_path / "run"
    if case == "unfinished":
        make_run(tmp_path, finished=False)
    elif case == "no-merged":
        (run / "merged").mkdir(parents=True)
        (run / "run.json").write_text("{}")
    elif case == "nothing":
        run.mkdir()
    elif case == "broken":
        make_run(tmp_path)
        (run / "merged" / "model.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{")
    with pytest.raises(ModelError, match=expect):
        reg.import_run(run)
    assert reg.versions() == []


def test_names_are_checked_and_never_reused(reg, tmp_path):
    reg.import_run(make_run(tmp_path), name="a")
    with pytest.raises(ModelError, match="exists already"):
        reg.import_run(make_run(tmp_path, "r2"), name="a")
    for bad in ("current", "../x", "a b", ""):
        with pytest.raises(ModelError, match="version name"):
            reg.import_run(make_run(tmp_path, f"r-{len(bad)}-{bad[:1] or 'e'}".replace("/", "")), name=bad or "-")
    with pytest.raises(ModelError, match=r"no model version 'zz' .*versions: a"):
        reg.get("zz")


def test_model_list_marks_the_current_version(config, tmp_path, capsys):
    rc, out, _ = cli(capsys, "model", "import", str(make_run(tmp_path)), "-c", str(config))
    assert rc == 0 and "as v1" in out
    cli(capsys, "model", "import", str(make_run(tmp_path, "r2", dataset_hash="d2")), "-c", str(config))
    rc, out, err = cli(capsys, "model", "promote", "v1", "-c", str(config))
    assert rc == 0, err
    assert "promote: v1 is current (was none); no station is running" in out  # the first: nothing to compare
    rc, out, _ = cli(capsys, "model", "list", "--json", "-c", str(config))
    listed = json.loads(out)
    assert listed["current"] == "v1" and [(r["version"], r["current"]) for r in listed["versions"]] == \
        [("v1", True), ("v2", False)]
    assert listed["versions"][1]["dataset_hash"] == "d2" and listed["manifests"]["v1"]["steps"] == 40
    rc, out, _ = cli(capsys, "model", "list", "-c", str(config))
    assert rc == 0 and "\n* v1 " in out and "\n  v2 " in out and "(current: v1)" in out


# --- the pointer, rollback ------------------------------------------------------------------------


def test_the_pointer_is_replaced_whole_or_not_at_all(reg, tmp_path, monkeypatch):
    for i in range(3):
        reg.import_run(make_run(tmp_path, f"r{i}"))
    reg.switch("v1")
    before = (reg.root / "current").read_text()

    def crash(*a):
        raise OSError("disk gone")

    monkeypatch.setattr(models_mod.os, "replace", crash)
    with pytest.raises(OSError):
        reg.switch("v2")
    monkeypatch.undo()
    assert (reg.root / "current").read_text() == before and reg.current().id == "v1"
    # a reader never sees a half-written pointer while it is switched back and forth
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            seen.add(json.loads((reg.root / "current").read_text())["version"])

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(60):
            reg.switch(("v2", "v3")[i % 2])
    finally:
        stop.set()
        t.join()
    assert seen <= {"v1", "v2", "v3"} and seen & {"v2", "v3"}


def test_rollback_returns_to_the_version_current_before(reg, tmp_path):
    for i in range(3):
        reg.import_run(make_run(tmp_path, f"r{i}"))
    with pytest.raises(ModelError, match="no version is current"):
        reg.rollback()
    for v in ("v1", "v2", "v3"):
        reg.switch(v)
    assert reg.rollback() == ("v3", "v2") and reg.current().id == "v2"
    assert reg.rollback() == ("v2", "v1") and reg.current().id == "v1"
    with pytest.raises(ModelError, match="v1 is the first version"):
        reg.rollback()
    actions = [(e["action"], e.get("from"), e.get("to")) for e in reg.history() if e["action"] != "import"]
    assert actions == [("promote", None, "v1"), ("promote", "v1", "v2"), ("promote", "v2", "v3"),
                       ("rollback", "v3", "v2"), ("rollback", "v2", "v1")]


def test_rollback_through_the_cli_without_a_station(config, tmp_path, capsys):
    reg = Registry(tmp_path / "models")
    for i in range(2):
        reg.import_run(make_run(tmp_path, f"r{i}"))
    reg.switch("v1")
    reg.switch("v2")
    rc, out, _ = cli(capsys, "model", "rollback", "-c", str(config))
    assert rc == 0 and "rollback: v1 is current (was v2); no station is running" in out
    rc, _, err = cli(capsys, "model", "rollback", "-c", str(config))
    assert rc == 1 and "nothing to roll back to" in err


# --- the promotion rules --------------------------------------------------------------------------


@pytest.fixture
def two(reg, tmp_path):
    reg.import_run(make_run(tmp_path, "r1"))
    reg.import_run(make_run(tmp_path, "r2"))
    reg.switch("v1")
    return reg


def test_promotion_refused_for_each_rule_with_the_reason(two, config, capsys):
    rc, _, err = cli(capsys, "model", "promote", "v2", "-c", str(config))
    assert rc == 1 and "promotion of v2 refused: v2 was never evaluated" in err
    evaluated(two, "v2", against="v0")
    assert "evaluated against v0, but the current version is v1" in promotion_refusals(
        two.get("v2"), two.current(), 0.0)[0]
    evaluated(two, "v2", against="v1", missed=["board-17", "board-23"])
    rc, _, err = cli(capsys, "model", "promote", "v2", "-c", str(config))
    assert rc == 1 and "v2 misses 2 defective parts that v1 caught: board-17, board-23" in err
    evaluated(two, "v2", against="v1", cur_overkill=0.05, cand_overkill=0.10)
    rc, _, err = cli(capsys, "model", "promote", "v2", "-c", str(config))
    assert rc == 1 and "raises overkill from 5.0% (v1) to 10.0%: +5.0 points, beyond the margin of 0.0" in err
    rc, _, err = cli(capsys, "model", "promote", "v2", "--margin", "0.04", "-c", str(config))
    assert rc == 1 and "margin of 4.0 points" in err
    assert two.current().id == "v1"  # every refusal left the pointer alone
    rc, out, err = cli(capsys, "model", "promote", "v2", "--margin", "0.05", "-c", str(config))
    assert rc == 0 and "v2 is current (was v1)" in out, err


def test_the_configured_margin_and_recordings_that_cannot_tell(two, tmp_path, station_config):
    evaluated(two, "v2", against="v1", cur_overkill=0.0, cand_overkill=0.02)
    assert promotion_refusals(two.get("v2"), two.current(), 0.02) == []
    assert promotion_refusals(two.get("v2"), two.current(), 0.01)
    cfg = load_config(station_config(models={"dir": str(two.root), "promote_overkill_margin": 0.02}))
    assert cfg.models.promote_overkill_margin == 0.02 and cfg.models_dir == two.root
    evaluated(two, "v2", against="v1", good=0)
    assert any("no good part" in r for r in promotion_refusals(two.get("v2"), two.current(), 0.0))
    evaluated(two, "v2", against="v1", defective=0)
    assert any("no defective part" in r for r in promotion_refusals(two.get("v2"), two.current(), 0.0))


def test_failed_parity_refuses(reg, tmp_path):
    reg.import_run(make_run(tmp_path, "r1"))
    reg.import_run(make_run(tmp_path, "r2", awq=True, parity={"ok": False, "max_diff": 0.3}))
    reg.switch("v1")
    evaluated(reg, "v2", against="v1")
    (why,) = promotion_refusals(reg.get("v2"), reg.current(), 0.0)
    assert "failed the parity check" in why and "0.3" in why


def test_force_promotes_and_is_logged_with_what_it_overrode(two, config, capsys):
    evaluated(two, "v2", against="v1", missed=["board-3"])
    rc, out, err = cli(capsys, "model", "promote", "v2", "--force", "-c", str(config))
    assert rc == 0 and "v2 is current" in out
    assert "model_promote_forced" in err and "board-3" in err
    last = two.history()[-1]
    assert last["action"] == "promote" and last["forced"] is True and "board-3" in last["overridden"][0]


def test_promoting_the_current_one_or_an_unknown_one(two, config, capsys):
    rc, _, err = cli(capsys, "model", "promote", "v1", "-c", str(config))
    assert rc == 1 and "v1 is the current version already" in err
    rc, _, err = cli(capsys, "model", "promote", "v9", "-c", str(config))
    assert rc == 1 and "no model version 'v9'" in err


def test_compare_names_what_the_candidate_misses_and_newly_rejects():
    items = [{"id": "g1", "label": "good"}, {"id": "g2", "label": "good"},
             {"id": "d1", "label": "defective"}, {"id": "d2", "label": "defective"}]

    def res(*actions):
        return [{"id": i["id"], "action": a, "decision": a, "decided_by": "vlm", "regions": []}
                for i, a in zip(items, actions)]

    out = compare(items, res("PASS", "PASS", "REJECT", "PASS"), res("REJECT", "PASS", "PASS", "REJECT"))
    assert out["missed_caught_by_current"] == ["d1"] and out["new_overkill"] == ["g1"]
    assert out["current"]["overkill_rate"] == 0.0 and out["candidate"]["overkill_rate"] == 0.5
    assert out["overkill_delta"] == 0.5
    assert [(p["id"], p["current"]["action"], p["candidate"]["action"]) for p in out["per_part"]] == [
        ("g1", "PASS", "REJECT"), ("g2", "PASS", "PASS"), ("d1", "REJECT", "PASS"), ("d2", "PASS", "REJECT")]
    alone = compare(items, None, res("PASS", "PASS", "REJECT", "REJECT"))
    assert "current" not in alone and alone["candidate"]["miss_rate"] == 0.0


# --- what rows are stamped with -------------------------------------------------------------------


def test_model_version_current_resolves_through_the_registry(two, station_config, tmp_path):
    path = station_config(models={"dir": str(two.root)},
                          judge={"kind": "vlm", "model_version": "current", "votes": 1})
    cfg = load_config(path)
    assert cfg.judge.model_dir == two.root / "v1" / "merged" and cfg.judge.model_version == "current"
    assert versions_of(cfg, "mh").model_version == "v1"
    two.switch("v2")
    again = load_config(path)  # what a reload reads
    assert again.judge.model_dir == two.root / "v2" / "merged" and again.fingerprint() != cfg.fingerprint()
    assert versions_of(again, "mh").model_version == "v2"
    assert load_config(path, ["judge.model_version=v1"]).judge.model_dir == two.root / "v1" / "merged"
    with pytest.raises(ConfigError, match="judge.model_dir, judge.model_version: give one of the two"):
        load_config(path, [f"judge.model_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"judge.model_version: v7: no model version 'v7'"):
        load_config(path, ["judge.model_version=v7"])
    with pytest.raises(ConfigError, match="judge: give judge.model_dir"):
        load_config(path, ["judge.model_version=null"])
    assert versions_of(load_config(station_config()), "mh").model_version is None  # the anomaly judge


def part_inspection():
    frame = PartFactory(1.0).trigger("cam").frame(np.full((64, 64), 100, np.uint8))
    regions = Regions(score=0.1, boxes=(), summary=MapSummary(0.1, 0.0, 0.1, 0), model="m")
    v = Verdict(defective=False, p_defective=0.1, confidence=0.9, decided_by="vlm", model="m")
    return Inspection(frame, Policy(PolicyConfig()).decide(frame, v, {"total": 1.0}), regions, v)


def test_rows_and_mqtt_results_name_the_model_version(tmp_path):
    versions = Versions("s", "mh", "ch", model_version="v3")
    s = Store(tmp_path / "i.db", None, lambda: versions)
    s.emit(part_inspection())
    assert s.db.execute(f"SELECT model_version, model_hash FROM {TABLE}").fetchall() == [("v3", "mh")]
    s.close()
    assert json.loads(result_payload(part_inspection(), versions, 1.0))["model_version"] == "v3"


def test_a_version_5_database_gains_the_model_version_column(tmp_path, monkeypatch):
    from edge_inspector.outputs import store as store_mod

    path = tmp_path / "i.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:5])
    row_for = store_mod.row_for
    monkeypatch.setattr(store_mod, "row_for", lambda *a: {k: v for k, v in row_for(*a).items()
                                                          if k != "model_version"})
    old = Store(path, None, lambda: Versions("s", "mh", "ch"))
    old.emit(part_inspection())
    old.close()
    monkeypatch.undo()
    s = Store(path, None, lambda: Versions("s", "mh", "ch", model_version="v2"))
    assert os.path.exists(f"{path}.bak-v5")
    s.emit(part_inspection())
    assert [r[0] for r in s.db.execute(f"SELECT model_version FROM {TABLE} ORDER BY id")] == [None, "v2"]
    s.close()


def test_the_model_commands_work_before_any_version_is_current(station_config, tmp_path, capsys):
    """A station config that follows `current` cannot load (exit 2) until a version is promoted; the
    model commands, which make one current, read it without resolving the version."""
    path = station_config(models={"dir": str(tmp_path / "models")},
                          judge={"kind": "vlm", "model_version": "current"})
    with pytest.raises(ConfigError, match="no current model version"):
        load_config(path)
    assert cli(capsys, "model", "import", str(make_run(tmp_path)), "-c", str(path))[0] == 0
    rc, out, err = cli(capsys, "model", "promote", "v1", "-c", str(path))
    assert rc == 0, err
    assert load_config(path).judge.model_dir == tmp_path / "models" / "v1" / "merged"
