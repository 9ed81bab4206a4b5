"""The versions a part is stamped with, in the row and on MQTT, across a recipe reload.

The station runs in-process against a real Mosquitto and a real SQLite file. The judge is the VLM
judge's config with the anomaly judge standing in for the model (the recipe is what is under test,
not the model).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading

import pytest

from tests.helpers import wait_until

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.judge.anomaly import AnomalyJudge, AnomalyJudgeConfig

pytestmark = pytest.mark.slow


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_recipe_version_in_every_row_and_the_state_follows_a_reload_at_once(
        broker, subscriber, station_config, tmp_path, monkeypatch):
    monkeypatch.setattr("edge_inspector.judge.vlm.build", lambda cfg, **kw: AnomalyJudge(AnomalyJudgeConfig(), 1.0))
    recipe = tmp_path / "board.yaml"
    recipe.write_text("product: board, first edition\n")
    first = digest(recipe)
    path = station_config(capture={"interval_ms": 30}, judge={"kind": "vlm", "model_dir": str(tmp_path / "m"),
                                                              "recipe": str(recipe)})
    sets = ["mqtt.host=127.0.0.1", f"mqtt.port={broker.port}", "mqtt.topic_prefix=ei-test",
            "mqtt.stats_interval_s=3600"]  # no periodic state check: the reload must push it
    sub = subscriber(broker)
    station = Station.build(load_config(path, sets), str(path), sets)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        assert wait_until(lambda: len(sub.results()) >= 3, 60)

        def state():
            return json.loads(sub.on("state")[-1][0]) if sub.on("state") else {}

        assert state()["recipe"] == "board" and state()["recipe_version"] == first
        recipe.write_text("product: board, second edition\n")
        second = digest(recipe)
        assert station.request_reload("test")
        reloader = station.services.get("reload")
        assert wait_until(lambda: reloader.status()["state"] == "applied", 60), reloader.status()
        assert wait_until(lambda: state().get("recipe_version") == second, 5)  # not at the next stats
        n = len(sub.results())
        assert wait_until(lambda: len(sub.results()) >= n + 3, 60)
    finally:
        station.request_stop("test")
        runner.join(60)
    assert not runner.is_alive()
    conn = sqlite3.connect(station.cfg.db_path)
    rows = conn.execute("SELECT part_id, recipe, recipe_version FROM inspections ORDER BY id").fetchall()
    conn.close()
    assert {r[1] for r in rows} == {"board"}
    versions = [r[2] for r in rows]
    switch = versions.index(second)
    assert set(versions[:switch]) == {first} and set(versions[switch:]) == {second} and switch >= 3
    assert wait_until(lambda: len(sub.results()) == len(rows), 10)
    published = {r["id"]: r["recipe_version"] for r in sub.results()}
    assert all(published[pid] == v for pid, _, v in rows)  # the row and its message agree
