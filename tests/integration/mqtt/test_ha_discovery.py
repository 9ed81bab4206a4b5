"""Home Assistant discovery on a real broker: the retained configs, and their templates rendered
(Jinja2, as Home Assistant does) against what the daemon really published."""

from __future__ import annotations

import json

import jinja2

from edge_inspector.config import load_config
from edge_inspector.outputs.mqtt.ha_discovery import HomeAssistantConfig, discovery_messages
from edge_inspector.outputs.mqtt.topics import Topics
from tests.helpers import wait_until
from tests.integration.mqtt.conftest import PREFIX, STATION


def render(template: str, payload: bytes) -> str:
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload)).strip()


def test_discovery_configs_are_retained_and_their_templates_read_the_real_messages(broker, subscriber, daemon):
    station = subscriber(broker)
    d = daemon(broker, "mqtt.stats_interval_s=0.5", "mqtt.home_assistant.discovery=true", max_parts=10)
    assert d.wait(90) == 0
    ha = subscriber(broker, "homeassistant/#")  # after the run: what HA finds when it starts later
    node = f"edge_inspector_{STATION}"
    assert wait_until(lambda: len(ha.messages) >= 5, 10)
    configs = {t: json.loads(p) for t, p, retained in ha.messages if retained}
    assert set(configs) == {f"homeassistant/{c}/{node}/{o}/config" for c, o in (
        ("binary_sensor", "available"), ("sensor", "last_outcome"), ("sensor", "reject_rate"),
        ("sensor", "state"), ("binary_sensor", "camera"))}  # no PLC link configured: no entity for it
    base = f"{PREFIX}/{STATION}"
    for body in configs.values():
        assert body["unique_id"].startswith(node) and body["device"]["identifiers"] == [node]
    outcome = configs[f"homeassistant/sensor/{node}/last_outcome/config"]
    assert outcome["availability_topic"] == f"{base}/available"
    assert (outcome["payload_available"], outcome["payload_not_available"]) == ("online", "offline")
    assert wait_until(lambda: station.on("stats") and station.on("state") and len(station.results()) >= 10, 10)
    last = station.on("result")[-1][0]
    assert render(outcome["value_template"], last) == json.loads(last)["decision"]
    stats = station.on("stats")[-1][0]
    s = json.loads(stats)
    rate = render(configs[f"homeassistant/sensor/{node}/reject_rate/config"]["value_template"], stats)
    assert float(rate) == round(s["rejects"] / s["parts"] * 100, 1) and s["parts"] > 0
    state = station.on("state")[-1][0]
    assert render(configs[f"homeassistant/binary_sensor/{node}/camera/config"]["value_template"], state) == "ON"
    avail = configs[f"homeassistant/binary_sensor/{node}/available/config"]
    assert avail["state_topic"] == f"{base}/available" and "availability_topic" not in avail


def test_discovery_is_opt_in(station_config):
    cfg = load_config(station_config())
    assert cfg.mqtt.home_assistant.discovery is False
    assert discovery_messages(cfg.mqtt.home_assistant, Topics.of("p", "s"), "s") == []
    on = HomeAssistantConfig(discovery=True)
    with_plc = dict(discovery_messages(on, Topics.of("p", "s"), "s"))
    assert len(with_plc) == 6 and len(discovery_messages(on, Topics.of("p", "s"), "s", plc=False)) == 5
    health = json.loads(with_plc["homeassistant/binary_sensor/edge_inspector_s/plc_link/config"])
    state = json.dumps({"plc": {"name": "bridge", "state": "ready"}}).encode()
    assert render(health["value_template"], state) == "ON"
    assert render(health["value_template"], json.dumps({"plc": {"state": "fault"}}).encode()) == "OFF"
