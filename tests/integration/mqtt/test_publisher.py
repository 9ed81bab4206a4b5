"""The publisher in-process with a stand-in station, against a real Mosquitto: order, non-blocking
writes while the broker is down, a refused connection, username/password, TLS with a client cert."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from tests.helpers import wait_until

from edge_inspector.capture.base import PartFactory
from edge_inspector.commands import COMMANDS, Dispatcher, Reply
from edge_inspector.config import load_config
from edge_inspector.envelope import Inspection, Verdict
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.mqtt.link import build_mqtt
from edge_inspector.outputs.store import Store
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.versions import Versions

PARTS = PartFactory(5.0)


def inspection(i: int) -> Inspection:
    frame = PARTS.trigger("cam").frame(np.zeros((16, 16), np.uint8))
    p = 0.9 if i % 3 == 0 else 0.1
    v = Verdict(defective=p > 0.5, p_defective=p, confidence=max(p, 1 - p), decided_by="regions", model="m")
    return Inspection(frame, Policy(PolicyConfig()).decide(frame, v, {"total": 1.0}), None, v)


VERSIONS = Versions("test", "model-1", "c")


class Station:
    """What the publisher reads of a station."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.paused = threading.Event()
        self.paused_reason = ""
        self.versions = VERSIONS

    def snapshot(self):
        return {"counters": {"decisions": 0}, "source": {"name": "cam", "state": "online"},
                "outputs": [], "queue_depth": 0}

    def on_change(self, listener):
        self.listener = listener


def commands(station):
    """The command table with the station's pause and resume (the daemon's handlers, in little)."""

    def pause(req):
        station.paused.set()
        station.paused_reason = req.value
        return Reply(True, {"paused": True})

    def resume(req):
        station.paused.clear()
        return Reply(True, {"paused": False})

    return Dispatcher({**{n: (lambda r: Reply(True)) for n in COMMANDS}, "pause": pause, "resume": resume})



@pytest.fixture
def link(tmp_path):
    made = []

    def make(port: int, *sets: str):
        cfg = load_config(None, [f"station.data_dir={tmp_path}/data", "station.name=test",
                                 "mqtt.host=127.0.0.1",
                                 f"mqtt.port={port}", "mqtt.topic_prefix=ei-test", "mqtt.reconnect_max_s=1",
                                 *sets])
        lk = build_mqtt(cfg, lambda: VERSIONS)
        store = Store(cfg.db_path, None, lambda: VERSIONS, writers=[lk.outbox])
        outputs = Outputs([store, lk.output])
        station = Station(cfg)
        lk.publisher.attach(station, commands(station))
        lk.publisher.start()
        made.append((lk, outputs))
        return lk, outputs

    yield make
    for lk, outputs in made:
        lk.publisher.stop()  # the daemon's order: the service first, then the store
        outputs.close()


def test_writes_never_wait_for_a_down_broker_and_the_drain_keeps_order(mosquitto, subscriber, link):
    broker = mosquitto()
    sub = subscriber(broker)  # a persistent session: it survives the broker's restart
    broker.stop()
    lk, outputs = link(broker.port)
    times, parts = [], []
    for i in range(300):
        ins = inspection(i)
        parts.append(ins.frame.part_id)
        t = time.perf_counter()
        outputs.emit(ins)
        times.append(time.perf_counter() - t)
    assert not lk.publisher.connected.is_set()
    assert lk.outbox.pending == 300
    times.sort()
    # SQLite only: no emit waits for the broker (a connect attempt or a publish timeout would take
    # seconds); generous bounds, since a loaded machine makes each SQLite commit slower too
    assert times[150] < 0.25 and times[-1] < 2.0, (times[150], times[285], times[-1])
    broker.start()
    assert wait_until(lambda: len(sub.results()) >= 300, 30), len(sub.results())
    got = [r["id"] for r in sub.results()]
    assert got == parts, (len(got), len(set(got)))  # in order, each once
    assert wait_until(lambda: lk.outbox.pending == 0, 5)
    assert lk.publisher.health()["state"] == "connected"


def test_a_late_gate_answer_reaches_the_broker_after_the_result(mosquitto, subscriber, link):
    """A part recorded with gate ``unconfirmed``, then the gate's late answer: the result and then
    the gate message arrive, in that order (one outbox, one id order)."""
    from dataclasses import replace

    from edge_inspector.envelope import Action

    broker = mosquitto()
    sub = subscriber(broker)
    lk, outputs = link(broker.port)
    store = outputs.outputs[0]
    ins = inspection(1)
    ins = replace(ins, decision=replace(ins.decision, gate="unconfirmed"))
    outputs.emit(ins)
    store.regate(ins.frame.part_id, Action.REJECT, "failsafe_deadline")
    lk.publisher.notify()
    assert wait_until(lambda: sub.on("gate"), 20), sub.messages
    (payload, retained), = sub.on("gate")
    body = json.loads(payload)
    assert not retained
    assert (body["id"], body["action"], body["gate"], body["was"]) == (
        ins.frame.part_id, "REJECT", "failsafe_deadline", "unconfirmed")
    topics = [t.rsplit("/", 1)[-1] for t, _, _ in sub.messages if t.rsplit("/", 1)[-1] in ("result", "gate")]
    assert topics == ["result", "gate"]


def test_a_refused_connection_is_not_connected(mosquitto, tmp_path, link, monkeypatch):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "station", "s3cret"], check=True,
                   capture_output=True)
    broker = mosquitto(f"allow_anonymous false\npassword_file {pwfile}")
    bad, _ = link(broker.port)  # no credentials
    assert wait_until(lambda: bad.publisher.counts["refused"] >= 1, 10)
    assert not bad.publisher.connected.is_set() and bad.publisher.health()["state"] == "disconnected"
    monkeypatch.setenv("EI_TEST_MQTT_PASSWORD", "s3cret")
    good, outputs = link(broker.port, "mqtt.username=station", "mqtt.password=env:EI_TEST_MQTT_PASSWORD",
                         "mqtt.client_id=good")
    assert wait_until(good.publisher.connected.is_set, 10)
    outputs.emit(inspection(0))
    assert wait_until(lambda: good.outbox.delivered == 1, 10)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make test certificates")
def test_tls_with_a_client_certificate(mosquitto, tmp_path, link, subscriber):
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{d}/{name}.key",
                 "-out", f"{d}/{name}.csr")
        _openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", f"{d}/{name}.pem")
    broker = mosquitto(f"cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
                       "require_certificate true")
    no_cert, _ = link(broker.port, f"mqtt.tls={{ca_file: {d}/ca.pem}}", "mqtt.client_id=nocert")
    lk, outputs = link(broker.port, f"mqtt.tls={{ca_file: {d}/ca.pem, cert_file: {d}/client.pem, "
                       f"key_file: {d}/client.key}}")
    assert wait_until(lk.publisher.connected.is_set, 10)
    outputs.emit(inspection(0))
    assert wait_until(lambda: lk.outbox.delivered == 1, 10)
    assert not no_cert.publisher.connected.is_set()  # the broker wants a client certificate


def test_state_follows_pause_and_stats_carry_the_outbox(broker, subscriber, link):
    sub = subscriber(broker)
    lk, outputs = link(broker.port, "mqtt.stats_interval_s=0.5")
    assert wait_until(lambda: sub.on("state"), 10)
    assert json.loads(sub.on("state")[-1][0])["state"] == "running"
    sub.client.publish("ei-test/test/set/pause", b"shift change", qos=1)
    assert wait_until(lambda: json.loads(sub.on("state")[-1][0])["state"] == "paused", 10)
    assert lk.publisher.station.paused.is_set()
    assert json.loads(sub.on("state")[-1][0])["paused_reason"] == "shift change"
    for i in range(5):
        outputs.emit(inspection(i))
    assert wait_until(lambda: any(json.loads(p)["outbox"]["delivered"] == 5 for p, _ in sub.on("stats")), 10)
    stats = json.loads(sub.on("stats")[-1][0])
    assert stats["paused"] is True and stats["puback_ms"]["n"] >= 0 and stats["free_disk_mb"] > 0


def test_reject_images_are_jpeg_and_capped(broker, subscriber, link):
    sub = subscriber(broker)
    lk, outputs = link(broker.port, "mqtt.reject_image=true", "mqtt.reject_image_max_kb=8")
    assert wait_until(lk.publisher.connected.is_set, 10)
    frame = PARTS.trigger("cam").frame(np.random.default_rng(0).integers(0, 255, (480, 640), np.uint8))
    v = Verdict(defective=True, p_defective=0.9, confidence=0.9, decided_by="regions", model="m")
    outputs.emit(Inspection(frame, Policy(PolicyConfig()).decide(frame, v, {"total": 1.0}), None, v))
    outputs.emit(inspection(1))  # a PASS: no image
    outputs.emit(inspection(3))  # a REJECT (16x16): its image comes after any image of the PASS
    assert wait_until(lambda: len(sub.on("reject_image")) >= 2 and len(sub.results()) == 3, 10)
    (jpeg, retained), (small, _) = sub.on("reject_image")[:2]
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) <= 8 * 1024 and not retained
    shape = cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
    assert shape == (16, 16)  # the third part's: the PASS between them had none
