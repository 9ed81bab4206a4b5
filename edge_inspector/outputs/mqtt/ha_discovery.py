"""Home Assistant MQTT discovery (opt-in: ``mqtt.home_assistant.discovery``).

Retained config messages under ``<discovery_prefix>/<component>/<node>/<object>/config``, sent on
every (re)connect, describe entities over the topics the station publishes anyway: availability
(``<base>/available``, ``online`` / ``offline``), the last outcome (``<base>/result``), the reject
rate (``<base>/stats``), the station's state and the camera's and PLC link's health
(``<base>/state``). No new messages per part: Home Assistant reads the existing ones.
"""

from __future__ import annotations

import json
import re

from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.outputs.mqtt.topics import Topics

GOOD = ["ok", "ready", "online", "connected"]


class HomeAssistantConfig(ConfigModel):
    discovery: bool = Field(False, title="Home Assistant discovery", description=(
        "Publish retained Home Assistant MQTT discovery configs on every connect: availability, "
        "last outcome, reject rate, state, camera and PLC link health."))
    discovery_prefix: str = Field("homeassistant", min_length=1, pattern=r"^[A-Za-z0-9_-]+$",
                                  description="Home Assistant's discovery prefix.")


def _node(station: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"edge_inspector_{station}")


def _health(field: str) -> str:
    return (f"{{{{ 'ON' if (value_json.{field} or {{}}).get('state') in {GOOD!r} else 'OFF' }}}}")


def discovery_messages(cfg: HomeAssistantConfig, topics: Topics, station: str, version: str = "",
                       plc: bool = True, cameras: list[str] | None = None) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs to publish retained, qos 1; empty when discovery is off. ``plc``
    False (``plc.kind: none``): no PLC link entity, rather than one that is always unhealthy.
    ``cameras``: a multi-camera station's cameras (and view sets): a last outcome and a camera
    health entity for each, on ``<base>/<camera>/result`` and the state's ``cameras``."""
    if not cfg.discovery:
        return []
    node = _node(station)
    device = {"identifiers": [node], "name": f"edge-inspector {station}", "manufacturer": "edge-inspector",
              "model": "visual inspection station", **({"sw_version": version} if version else {})}
    common = {"availability_topic": topics.available, "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    entities = [
        ("binary_sensor", "available", {"name": "Available", "state_topic": topics.available,
                                        "payload_on": "online", "payload_off": "offline",
                                        "device_class": "connectivity", "availability": []}),
        ("sensor", "last_outcome", {"name": "Last outcome", "state_topic": topics.result,
                                    "value_template": "{{ value_json.decision }}",
                                    "json_attributes_topic": topics.result, "icon": "mdi:clipboard-check"}),
        ("sensor", "reject_rate", {"name": "Reject rate", "state_topic": topics.stats, "unit_of_measurement": "%",
                                   "state_class": "measurement",
                                   "value_template": "{{ ((value_json.rejects / value_json.parts) * 100) "
                                                     "| round(1) if value_json.parts else 0 }}"}),
        ("sensor", "state", {"name": "State", "state_topic": topics.state,
                             "value_template": "{{ value_json.state }}"}),
        ("binary_sensor", "camera", {"name": "Camera", "state_topic": topics.state,
                                     "device_class": "connectivity", "value_template": _health("camera")}),
        ("binary_sensor", "plc_link", {"name": "PLC link", "state_topic": topics.state,
                                       "device_class": "connectivity", "value_template": _health("plc")}),
    ]
    if not plc:
        entities = [e for e in entities if e[1] != "plc_link"]
    if cameras:
        entities = [e for e in entities if e[1] not in ("last_outcome", "camera")]
        for cam in cameras:
            key = re.sub(r"[^A-Za-z0-9_]", "_", cam)
            result = topics.result_for(cam)
            entities.append(("sensor", f"last_outcome_{key}", {
                "name": f"Last outcome {cam}", "state_topic": result, "icon": "mdi:clipboard-check",
                "value_template": "{{ value_json.decision }}", "json_attributes_topic": result}))
            entities.append(("binary_sensor", f"camera_{key}", {
                "name": f"Camera {cam}", "state_topic": topics.state, "device_class": "connectivity",
                "value_template": _health(f"cameras[{cam!r}]")}))
    out = []
    for component, obj, extra in entities:
        body = {**common, **extra, "unique_id": f"{node}_{obj}", "object_id": f"{node}_{obj}"}
        if body.get("availability") == []:  # the availability entity itself is always available
            body.pop("availability")
            for key in ("availability_topic", "payload_available", "payload_not_available"):
                body.pop(key)
        out.append((f"{cfg.discovery_prefix}/{component}/{node}/{obj}/config",
                    json.dumps(body, separators=(",", ":")).encode()))
    return out
