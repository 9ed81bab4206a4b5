"""The ``mqtt`` section. Off unless ``mqtt.host`` is set (and ``mqtt.enabled`` is not false)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from edge_inspector.commands import known_names
from edge_inspector.config_base import ConfigModel, ConfigPath, SecretRef
from edge_inspector.outputs.mqtt.ha_discovery import HomeAssistantConfig

_RECIPE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class MqttTlsConfig(ConfigModel):
    ca_file: ConfigPath | None = Field(None, description="CA certificate(s) that sign the broker's "
                                       "certificate (PEM). None: the system's CA store.")
    cert_file: ConfigPath | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: ConfigPath | None = Field(None, description="The client certificate's private key (PEM). "
                                        "A file readable by the daemon only, never in the YAML.")

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttConfig(ConfigModel):
    enabled: bool = Field(True, description="Publish to MQTT when a host is set; false turns MQTT off "
                          "without removing the section.")
    host: str | None = Field(None, min_length=1, description="The broker's host name or address. None "
                             "(the default): MQTT is off.")
    port: int = Field(1883, ge=1, le=65535, description="The broker's port (8883 is usual with TLS).")
    topic_prefix: str = Field("edge-inspector", min_length=1, max_length=100, description=(
        "Topics are <topic_prefix>/<station.name>/...; slashes allowed, no wildcards."))
    client_id: str | None = Field(None, max_length=64, description="MQTT client id. None: "
                                  "edge-inspector-<station.name>.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keepalive interval; the broker sends the "
                             "last will (offline) after 1.5 times this without a sign of life.")
    reconnect_max_s: float = Field(10.0, ge=1, le=600, description="Longest wait between reconnect "
                                   "attempts (the wait doubles from 1 s up to this).")
    tls: MqttTlsConfig | None = Field(None, description="TLS to the broker. None: plain TCP.")
    username: str | None = Field(None, min_length=1, description="User name for the broker.")
    password: SecretRef | None = Field(None, description="The broker password: env:NAME or file:PATH.")
    stats_interval_s: float = Field(10.0, ge=0.5, le=3600, description="Seconds between two messages "
                                    "on .../stats.")
    inflight: int = Field(20, ge=1, le=1000, description="Result messages published and not yet "
                          "acknowledged (PUBACK) at most.")
    outbox_max_rows: int = Field(100_000, ge=10, description=(
        "Undelivered results kept at most. When full, the oldest undelivered result is dropped from "
        "the outbox (it stays in the inspections table), counted and logged."))
    outbox_keep_delivered_s: float = Field(60.0, ge=0, description="Delivered outbox rows are deleted "
                                           "after this many seconds.")
    stop_flush_s: float = Field(2.0, ge=0, le=60, description="On a clean exit, wait up to this long for "
                                "the outbox to drain before publishing 'offline'.")
    reject_image: bool = Field(False, description="Also publish each REJECT's image (JPEG, boxes drawn) "
                               "on .../reject_image, best effort (QoS 0, not from the outbox).")
    reject_image_max_kb: int = Field(256, ge=8, le=10_240, description="A reject image larger than this "
                                     "is scaled down until it fits; one that never fits is skipped.")
    command_max_bytes: int = Field(256, ge=16, le=65536, description="Payloads on .../set/<name> larger "
                                   "than this are ignored (and logged).")
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig, description=(
        "Home Assistant MQTT discovery (opt-in): the station's entities appear in Home Assistant."))
    commands: list[str] = Field(default_factory=list, description=(
        "The commands that change the station which .../set/<name> may send (pause, resume, reload, "
        "recipe). Empty (the default): MQTT is read-only (status only)."))
    recipes: dict[str, ConfigPath] = Field(default_factory=dict, description=(
        "The recipes .../set/recipe may switch to: name -> recipe file (the VLM judge's judge.recipe). "
        "Empty: recipe switching over MQTT is off."))

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if any(c in v for c in "+#\0") or v.startswith("/") or v.endswith("/") or "//" in v:
            raise ValueError("a topic prefix has no wildcards (+ #), no empty levels and no leading or "
                             "trailing slash")
        return v

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: list[str]) -> list[str]:
        return known_names(v)

    @field_validator("recipes")
    @classmethod
    def _recipes(cls, v: dict[str, ConfigPath]) -> dict[str, ConfigPath]:
        bad = [r for r in v if not re.match(_RECIPE, r)]
        if bad:
            raise ValueError(f"recipe names are letters, digits, '_', '.', '-' (at most 64): {bad}")
        return v

    @model_validator(mode="after")
    def _auth(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        return self

    @property
    def active(self) -> bool:
        return self.enabled and self.host is not None
