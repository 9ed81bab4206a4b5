"""The ``api`` section: the HTTP API, the metrics and the local page (off unless enabled)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator, model_validator

from edge_inspector.commands import known_names
from edge_inspector.config_base import ConfigModel, SecretRef

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiConfig(ConfigModel):
    enabled: bool = Field(False, title="HTTP API", description=(
        "Serve the HTTP API under /api/v1, Prometheus metrics at /metrics and the local page at /."))
    host: str = Field("127.0.0.1", min_length=1, description=(
        "The address to bind. Loopback by default; any other address needs api.token."))
    port: int = Field(8321, ge=0, le=65535, description=(
        "The TCP port. 0: a free port, chosen at start and logged (api_listening)."))
    token: SecretRef | None = Field(None, description=(
        "The bearer token every request must carry (Authorization: Bearer ..., or ?token= for the "
        "page's live feed): env:NAME or file:PATH. Required when api.host is not loopback."))
    feed_queue: int = Field(64, ge=1, le=10000, description=(
        "Decisions buffered per live-feed client; a slower client loses the oldest, never the station."))
    max_upload_mb: float = Field(32.0, gt=0, le=1024, description=(
        "The largest image POST /api/v1/inspect accepts."))
    commands: list[str] = Field(default_factory=list, description=(
        "The commands that change the station which POST /api/v1/control/<name> (and the page's "
        "buttons) may send (pause, resume, reload). Empty (the default): the API is read-only, as "
        "MQTT is: a loopback port is open to every user of the machine."))

    @field_validator("commands")
    @classmethod
    def _commands(cls, v: list[str]) -> list[str]:
        return known_names(v)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ApiConfig:
        if self.enabled and not is_loopback(self.host) and self.token is None:
            raise ValueError(f"api.host {self.host!r} is not loopback: set api.token (env:NAME or "
                             "file:PATH), or bind 127.0.0.1")
        return self
