"""A running station with the HTTP API on a free loopback port, in this process's threads."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from tests.helpers import wait_until


@dataclass
class Live:
    station: Station
    url: str
    token: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                token: str | None = None) -> tuple[int, bytes, dict]:
        headers = dict(headers or {})
        token = token if token is not None else self.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def json(self, method: str, path: str, payload=None, **kw):
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        status, data, _ = self.request(method, path, body, headers, **kw)
        return status, json.loads(data)


def start(cfg_path, env_token: str | None = None) -> tuple[Live, threading.Thread]:
    station = Station.build(load_config(cfg_path))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(station.run(install_signals=False)),
                              name="test-station", daemon=True)
    thread.start()
    assert wait_until(station.ready.is_set, 60), "the station did not start"
    api = station.services.get("api")
    return Live(station, api.url, env_token), thread


@pytest.fixture
def live(station_config):
    """The demo station, a part every 100 ms, the API on 127.0.0.1:<free port>."""
    path = station_config(api={"enabled": True, "port": 0, "commands": ["pause", "resume", "reload"]},
                          capture={"kind": "demo", "interval_ms": 100, "defect_rate": 0.5})
    running, thread = start(path)
    yield running
    running.station.request_stop("test")
    thread.join(60)
    assert not thread.is_alive()
