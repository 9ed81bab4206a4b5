"""A real Mosquitto on a free loopback port, a separate subscriber, and the daemon as a subprocess.

The broker keeps its state on disk (persistence) so that a subscriber's session survives a broker
restart: a result published while that subscriber is still reconnecting is queued for it, and a
test can count every part.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import wait_until

PREFIX = "ei-test"
STATION = "test"

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from tools.starters import MOSQUITTO, Broker, free_port  # noqa: E402,F401 - shared with tools/soak.py


class Subscriber:
    """A separate MQTT client on ``<prefix>/<station>/#`` with a persistent session (QoS 1)."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.topic = topic

        def on_connect(c, _u, _f, rc, _p):
            if not rc.is_failure:
                c.subscribe(topic, qos=1)

        def on_subscribe(c, _u, _mid, _rcs, _p):
            self.connected.set()

        def on_message(_c, _u, msg):
            with self.lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = (
            on_connect, on_subscribe, on_message)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the test subscriber could not subscribe"

    def on(self, suffix: str) -> list[tuple[bytes, bool]]:
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t.endswith("/" + suffix)]

    def results(self) -> list[dict]:
        return [json.loads(p) for p, _ in self.on("result")]

    def result_ids(self) -> set[str]:
        return {r["id"] for r in self.results()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mosquitto(tmp_path):
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip(f"{MOSQUITTO} is missing: install Debian's mosquitto (tools/install_system_deps.sh)")
    brokers: list[Broker] = []

    def make(extra: str = "") -> Broker:
        b = Broker(tmp_path / f"broker{len(brokers)}", extra).start()
        brokers.append(b)
        return b

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture(autouse=True)
def _no_mqtt_thread_left():
    yield
    names = ("mqtt-outbox", "paho-mqtt-client-")  # the publisher's and the subscribers' (closed by now)
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith(names)], 5), \
        [t.name for t in threading.enumerate()]


@pytest.fixture
def broker(mosquitto) -> Broker:
    return mosquitto()


@pytest.fixture
def subscriber():
    subs: list[Subscriber] = []

    def make(broker: Broker, topic: str = f"{PREFIX}/{STATION}/#") -> Subscriber:
        s = Subscriber(broker.port, topic, f"test-sub-{len(subs)}-{os.getpid()}-{time.monotonic_ns()}")
        subs.append(s)
        return s

    yield make
    for s in subs:
        s.close()


class Daemon:
    """``python -m edge_inspector run`` with the demo source, logs (JSON) to a file."""

    def __init__(self, config: Path, broker: Broker, log: Path, sets: list[str], max_parts: int | None):
        self.log_path = log
        self.config = config
        args = [sys.executable, "-m", "edge_inspector", "run", "--config", str(config),
                "--set", "mqtt.host=127.0.0.1", "--set", f"mqtt.port={broker.port}",
                "--set", f"mqtt.topic_prefix={PREFIX}", "--set", "mqtt.reconnect_max_s=1",
                "--set", "logging.format=json", "--set", "logging.level=info"]
        for s in sets:
            args += ["--set", s]
        if max_parts is not None:
            args += ["--max-parts", str(max_parts)]
        self._log = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log)

    @property
    def db(self) -> Path:
        from edge_inspector.config import load_config

        return load_config(self.config).db_path

    def events(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.wait(10)


@pytest.fixture
def daemon(station_config, tmp_path):
    procs: list[Daemon] = []
    cfg_path: list[Path] = []

    def start(broker: Broker, *sets: str, max_parts: int | None = None, interval_ms: float = 0,
              **sections) -> Daemon:
        if not cfg_path:
            cfg_path.append(station_config(capture={"interval_ms": interval_ms}, **sections))
        d = Daemon(cfg_path[0], broker, tmp_path / f"daemon{len(procs)}.log", list(sets), max_parts)
        procs.append(d)
        return d

    yield start
    for d in procs:
        if d.proc.poll() is None:
            d.kill()
