"""A multi-camera station (configs/multi-camera.yaml's shape: two demo cameras, one shared judge)
in-process against a real Mosquitto and a real SQLite file: rows and topics carry the camera, and a
camera that drops gives NO-READs for its own parts only while the other goes on. A view set's part
is one row whose decision combines its views."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from tests.conftest import DESIGN_SEED, write_config
from tests.helpers import wait_until

from edge_inspector.config import load_config
from edge_inspector.daemon import Station

pytestmark = pytest.mark.slow

PREFIX, STATION = "ei-test", "test"
BASE = f"{PREFIX}/{STATION}"


def config(tmp_path, product_dir, cameras, **top):
    regions = {"kind": "variation", "reference": str(product_dir / "reference.png"),
               "good_images": str(product_dir / "good")}
    data = {"station": {"name": STATION, "data_dir": str(tmp_path / "data")}, "regions": regions,
            "policy": {"deadline_ms": 20000}, "logging": {"level": "warning"}, "cameras": cameras, **top}
    return write_config(tmp_path / "multi.yaml", data)


def demo(name, seed, **kw):
    return {"name": name, "capture": {"kind": "demo", "design_seed": DESIGN_SEED, "seed": seed,
                                      "defect_rate": 0.5, "interval_ms": 20}, **kw}


def fail_at(source, index: int):
    """The demo source raises from its ``index``-th board on: the camera drops mid-part (its
    trigger was made, its image never comes)."""
    board = source.board

    def failing(i):
        if i >= index:
            raise OSError("camera unplugged")
        return board(i)

    source.board = failing


def rows(db) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM inspections ORDER BY id")]
    finally:
        conn.close()


def run(station, max_parts):
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault(
        "rc", station.run(max_parts=max_parts, install_signals=False)))
    runner.start()
    runner.join(240)
    assert not runner.is_alive(), "the station did not stop"
    return result["rc"]


def test_rows_and_topics_carry_the_camera_and_a_dropped_camera_gives_no_reads_for_its_parts_only(
        broker, subscriber, tmp_path, product_dir):
    path = config(tmp_path, product_dir, [demo("top", 1000), demo("bottom", 2000)])
    sets = ["mqtt.host=127.0.0.1", f"mqtt.port={broker.port}", f"mqtt.topic_prefix={PREFIX}",
            "mqtt.stats_interval_s=3600"]
    sub = subscriber(broker)
    cfg = load_config(path, sets)
    station = Station.build(cfg, str(path), sets)
    top, bottom = station.units
    assert (top.name, bottom.name) == ("top", "bottom")
    assert station.stages.inspector_for("top").judge is station.stages.inspector_for("bottom").judge
    fail_at(bottom.source, 3)
    assert run(station, 12) == 1  # a camera dropped: the exit says so (systemd restarts the daemon)

    got = rows(cfg.db_path)
    assert len(got) == 12 and {r["camera"] for r in got} == {"top", "bottom"}
    mine = [r for r in got if r["camera"] == "bottom"]
    assert [r["outcome"] for r in mine[:3]] != ["NO-READ"] * 3 and len(mine) == 4  # 3 boards, then the drop
    assert (mine[3]["outcome"], mine[3]["reason"]) == ("NO-READ", "camera_offline")
    assert "camera bottom dropped" in mine[3]["detail"] and "unplugged" in mine[3]["detail"]
    others = [r for r in got if r["camera"] == "top"]
    assert len(others) == 8 and all(r["outcome"] in ("PASS", "REJECT") for r in others)  # it went on
    assert {r["outcome"] for r in others} == {"PASS", "REJECT"}
    assert all(r["image_path"] is None or f"/{r['camera']}/{r['part_id']}.jpg" in r["image_path"]
               for r in got) and any(r["image_path"] for r in others)
    assert len({r["part_id"] for r in got}) == 12

    # MQTT: each result under its camera, the station's own topics stay the station's
    assert wait_until(lambda: len(sub.results()) >= 12, 20)
    with sub.lock:
        messages = list(sub.messages)
    results = [(t, json.loads(p)) for t, p, _ in messages if t.endswith("/result")]
    assert {t for t, _ in results} == {f"{BASE}/top/result", f"{BASE}/bottom/result"}
    assert all(t == f"{BASE}/{r['camera']}/result" for t, r in results)
    assert sorted(r["id"] for _, r in results) == sorted(r["part_id"] for r in got)
    topics = {t for t, _, _ in messages}
    assert f"{BASE}/available" in topics and f"{BASE}/state" in topics
    state = json.loads(sub.on("state")[-1][0])
    assert set(state["cameras"]) == {"top", "bottom"}
    snap = {c["name"]: c for c in station.snapshot()["cameras"]}
    assert snap["bottom"]["dropped"] and "unplugged" in snap["bottom"]["dropped"] and not snap["top"]["dropped"]
    assert snap["top"]["counters"]["decisions"] == 8 and snap["bottom"]["counters"]["NO-READ"] == 1


def test_a_view_set_part_is_one_row_its_decision_from_its_views_and_a_dropped_view_no_reads_it(
        tmp_path, product_dir):
    path = config(tmp_path, product_dir, [demo("front", 3000, view_set="board"),
                                          demo("back", 4000, view_set="board"), demo("side", 5000)])
    cfg = load_config(path)
    station = Station.build(cfg, str(path))
    board = next(u for u in station.units if u.name == "board")
    assert board.view_set and board.cameras == ("front", "back")
    fail_at(board.source.cameras[1], 2)  # the back camera drops after two boards
    assert run(station, 16) == 0  # a view set outlives one of its cameras: the set goes on

    got = rows(cfg.db_path)
    assert len(got) == 16 and {r["camera"] for r in got} == {"board", "side"}
    sets = [r for r in got if r["camera"] == "board"]
    assert sets and all(r["views"] for r in sets) and all(r["views"] is None for r in got if r["camera"] == "side")
    for r in sets:
        views = {v["camera"]: v for v in json.loads(r["views"])}
        assert set(views) == {"front", "back"}
        outcomes = {v["decision"] for v in views.values()}
        want = "REJECT" if "REJECT" in outcomes else "NO-READ" if "NO-READ" in outcomes else "PASS"
        assert r["outcome"] == want, (r["outcome"], views)
    dropped = [r for r in sets[2:]]
    assert dropped and all(json.loads(r["views"])[1]["reason"] == "camera_offline" for r in dropped)
    assert all(r["outcome"] in ("REJECT", "NO-READ") for r in dropped)  # never a PASS without its back
    assert all(json.loads(r["views"])[1]["reason"] != "camera_offline" for r in sets[:2])
    assert all(r["outcome"] in ("PASS", "REJECT") for r in got if r["camera"] == "side")


def test_each_cameras_rows_carry_its_own_recipe(tmp_path, product_dir, monkeypatch):
    import hashlib

    from edge_inspector.judge.anomaly import AnomalyJudge, AnomalyJudgeConfig

    built = []

    def fake_vlm(cfg, **kw):  # the VLM judge's config and recipes, the anomaly judge for the model
        built.append(kw.get("camera_recipes"))
        return AnomalyJudge(AnomalyJudgeConfig(), 1.0)

    monkeypatch.setattr("edge_inspector.judge.vlm.build", fake_vlm)
    recipes = {}
    for name in ("top", "bottom"):
        recipes[name] = tmp_path / f"board-{name}.yaml"
        recipes[name].write_text(f"product: the {name} of the board\n")
    path = config(tmp_path, product_dir, [demo("top", 1000, recipe=str(recipes["top"])),
                                          demo("bottom", 2000, recipe=str(recipes["bottom"]))],
                  judge={"kind": "vlm", "model_dir": str(tmp_path / "m"), "recipe": str(recipes["top"])})
    cfg = load_config(path)
    station = Station.build(cfg, str(path))
    assert built == [{"top": recipes["top"], "bottom": recipes["bottom"]}]  # one judge, both recipes
    assert run(station, 6) == 0
    got = rows(cfg.db_path)
    assert {r["camera"] for r in got} == {"top", "bottom"}
    for r in got:
        want = recipes[r["camera"]]
        assert (r["recipe"], r["recipe_version"]) == (want.stem, hashlib.sha256(want.read_bytes()).hexdigest()[:12])
