"""Wiring for the daemon: the outbox (a table written in the store's transaction), the output that
wakes the publisher after the commit, and the publisher service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspector.config_base import reveal_secret
from edge_inspector.envelope import Inspection, Outcome
from edge_inspector.errors import StartupError
from edge_inspector.outputs.base import Output
from edge_inspector.outputs.mqtt.outbox import Outbox
from edge_inspector.outputs.mqtt.topics import Topics
from edge_inspector.versions import Versions


class MqttOutput(Output):
    """Runs after the store (the result is committed to the outbox by then): wakes the publisher,
    records the part's latency for the stats, hands a reject image over. Never touches the network."""

    name = "mqtt"

    def __init__(self, publisher: Any) -> None:
        self.publisher = publisher

    def emit(self, inspection: Inspection) -> None:
        p = self.publisher
        p.part_ms.append(float(inspection.decision.timings_ms.get("total", 0.0)))
        if (p.cfg.reject_image and inspection.decision.outcome is Outcome.REJECT
                and inspection.frame.image is not None):
            p.images.append(inspection)
        p.notify()

    def health(self) -> dict[str, Any]:
        return self.publisher.health()


@dataclass
class MqttLink:
    outbox: Outbox
    output: MqttOutput
    publisher: Any  # MqttPublisher (a lifecycle Service)


def build_mqtt(cfg: Any, versions: Callable[[], Versions]) -> MqttLink:
    """From the station's config; ``versions``: what results and the state are stamped with (the
    stages in force). Raises StartupError for a missing secret, file or paho."""
    m = cfg.mqtt
    try:
        from edge_inspector.outputs.mqtt.publisher import MqttPublisher
    except ModuleNotFoundError as exc:
        raise StartupError(f"mqtt.host is set but {exc.name} is not installed "
                           "(pip install paho-mqtt, or the package's [all] extra)") from None
    password = None
    if m.password is not None:
        try:
            password = reveal_secret(m.password)
        except ValueError as exc:
            raise StartupError(f"mqtt.password: {exc}") from None
    if m.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(m.tls, key)
            if path is not None and not Path(path).is_file():
                raise StartupError(f"mqtt.tls.{key}: {path} is not a readable file")
    topics = Topics.of(m.topic_prefix, cfg.station.name, per_camera=cfg.multi_camera)
    outbox = Outbox((lambda i: topics.result_for(i.frame.camera)) if cfg.multi_camera else topics.result,
                    versions, m.outbox_max_rows, gate_topic=topics.gate)
    publisher = MqttPublisher(m, cfg.db_path, cfg.station.data_dir, topics, outbox, versions, password,
                              client_name=cfg.station.name)
    from edge_inspector.outputs.mqtt.ha_discovery import discovery_messages

    units = list(dict.fromkeys(c.view_set or c.name for c in cfg.cameras or []))
    publisher.retained_on_connect = discovery_messages(
        m.home_assistant, topics, cfg.station.name,
        plc=cfg.plc.kind != "none" or any(c.plc.kind != "none" for c in cfg.cameras or []),
        cameras=units or None)
    return MqttLink(outbox, MqttOutput(publisher), publisher)
