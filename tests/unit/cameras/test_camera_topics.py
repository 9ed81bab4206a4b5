"""A multi-camera station's MQTT topics and Home Assistant entities carry the camera."""

from __future__ import annotations

import json

import pytest

from edge_inspector.outputs.mqtt.ha_discovery import HomeAssistantConfig, discovery_messages
from edge_inspector.outputs.mqtt.topics import Topics


def test_results_and_reject_images_go_under_the_camera_and_the_stations_topics_stay():
    multi, single = Topics.of("pre", "s1", per_camera=True), Topics.of("pre", "s1")
    assert multi.result_for("top") == "pre/s1/top/result"
    assert multi.reject_image_for("top") == "pre/s1/top/reject_image"
    assert (multi.available, multi.state, multi.stats, multi.set_filter) == (
        "pre/s1/available", "pre/s1/state", "pre/s1/stats", "pre/s1/set/+")
    assert multi.command_name(multi.result_for("top")) is None  # a result is never a command
    assert single.result_for("top") == "pre/s1/result" == single.result  # one camera: as before


def test_home_assistant_gets_a_last_outcome_and_a_health_entity_per_camera():
    jinja2 = pytest.importorskip("jinja2")
    topics = Topics.of("pre", "s1", per_camera=True)
    msgs = {t: json.loads(p) for t, p in discovery_messages(HomeAssistantConfig(discovery=True), topics, "s1",
                                                            plc=False, cameras=["top", "board-2"])}
    by_id = {b["object_id"].removeprefix("edge_inspector_s1_"): b for b in msgs.values()}
    assert "last_outcome" not in by_id and "camera" not in by_id
    assert by_id["last_outcome_top"]["state_topic"] == "pre/s1/top/result"
    assert by_id["last_outcome_board_2"]["state_topic"] == "pre/s1/board-2/result"
    env = jinja2.Environment()
    state = {"cameras": {"top": {"state": "online"}, "board-2": {"state": "degraded"}}}
    render = lambda key: env.from_string(by_id[key]["value_template"]).render(value_json=state)  # noqa: E731
    assert (render("camera_top"), render("camera_board_2")) == ("ON", "OFF")
