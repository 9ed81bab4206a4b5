#!/usr/bin/env python3
"""Benchmark MQTT publishing through the durable outbox to a local Mosquitto (QoS 1).

    python tools/bench_mqtt.py [--parts 2000] [--rate 50] [--inflight 20]

Starts its own Mosquitto on a free loopback port and a subscriber, and runs the real store +
outbox + publisher (the daemon's wiring) with synthetic decided parts:

- burst: every part written as fast as the store takes them while the publisher drains: results/s
  from the first write to the last PUBACK;
- backlog: parts written while the broker is down, then the broker started: the catch-up rate;
- paced: parts at a line's rate (--rate per second): latency from the decision to the PUBACK.

"write" is the inspection path's cost per part (SQLite row + outbox row in one transaction,
the publisher woken), against the row alone without the outbox.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.capture.base import PartFactory  # noqa: E402
from edge_inspector.commands import COMMANDS, Dispatcher, Reply  # noqa: E402
from edge_inspector.config import load_config  # noqa: E402
from edge_inspector.envelope import Inspection, Verdict  # noqa: E402
from edge_inspector.logs import configure  # noqa: E402
from edge_inspector.outputs import Outputs  # noqa: E402
from edge_inspector.outputs.mqtt.link import build_mqtt  # noqa: E402
from edge_inspector.outputs.store import Store  # noqa: E402
from edge_inspector.policy import Policy, PolicyConfig  # noqa: E402
from edge_inspector.versions import Versions  # noqa: E402

PARTS = PartFactory(60.0)
VERSIONS = Versions("bench", "bench", "c")
POLICY = Policy(PolicyConfig())
IMAGE = np.zeros((16, 16), np.uint8)


def inspection(i: int) -> Inspection:
    frame = PARTS.trigger("bench-cam").frame(IMAGE)
    p = 0.9 if i % 4 == 0 else 0.1
    v = Verdict(defective=p > 0.5, p_defective=p, confidence=max(p, 1 - p), decided_by="regions",
                model="bench", defect_type="scratch" if p > 0.5 else None)
    return Inspection(frame, POLICY.decide(frame, v, {"regions": 3.0, "judge": 1.0, "total": 4.2}), None, v)


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


class Broker:
    def __init__(self, root: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             f"max_queued_messages 0\nlog_dest file {root}/mosquitto.log\n"
                             + ("user root\n" if os.geteuid() == 0 else ""))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Counter:
    """A separate subscriber: counts result messages (QoS 1)."""

    def __init__(self, port: int, topic: str) -> None:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.n = 0
        ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
        self.c.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *_: ready.set()
        self.c.on_message = lambda *_: setattr(self, "n", self.n + 1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not ready.wait(10):
            raise SystemExit("the subscriber could not subscribe")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.002)
    return False


def run(root: Path, broker: Broker, args, name: str):
    cfg = load_config(None, [f"station.data_dir={root / name}", "station.name=bench", "mqtt.host=127.0.0.1",
                             f"mqtt.port={broker.port}", f"mqtt.inflight={args.inflight}",
                             "mqtt.reconnect_max_s=1", "mqtt.stats_interval_s=3600"])
    link = build_mqtt(cfg, lambda: VERSIONS)
    store = Store(cfg.db_path, None, lambda: VERSIONS, writers=[link.outbox])
    outputs = Outputs([store, link.output])
    station = SimpleNamespace(cfg=cfg, paused=threading.Event(), paused_reason="", versions=VERSIONS,
                              on_change=lambda listener: None,
                              snapshot=lambda: {"counters": {}, "source": {}, "outputs": [],
                                                "queue_depth": 0})
    link.publisher.attach(station, Dispatcher({n: (lambda r: Reply(False, error="benchmark")) for n in COMMANDS}))
    link.publisher.start()
    return link, outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=50.0, help="parts/s of the paced run")
    ap.add_argument("--paced-parts", type=int, default=500)
    ap.add_argument("--inflight", type=int, default=20)
    args = ap.parse_args()
    configure("warning", "console")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        broker = Broker(root)
        broker.start()
        sub = Counter(broker.port, "edge-inspector/bench/result")
        try:
            # the store alone: the row without the outbox
            base = Store(root / "base.db", None, lambda: VERSIONS)
            t_base = []
            for i in range(args.parts):
                ins = inspection(i)
                t = time.perf_counter()
                base.emit(ins)
                t_base.append((time.perf_counter() - t) * 1000)
            base.close()

            # burst
            link, outputs = run(root, broker, args, "burst")
            wait(link.publisher.connected.is_set, 10)
            t_write, start = [], time.perf_counter()
            for i in range(args.parts):
                ins = inspection(i)
                t = time.perf_counter()
                outputs.emit(ins)
                t_write.append((time.perf_counter() - t) * 1000)
            ok = wait(lambda: link.outbox.delivered >= args.parts, 120)
            dt = time.perf_counter() - start
            wait(lambda: sub.n >= args.parts, 5)
            rows.append(("burst", args.parts, args.parts / dt, list(link.publisher.ack_ms), ok, sub.n))
            link.publisher.stop()
            outputs.close()

            # backlog: written while the broker is down, then drained
            broker.stop()
            link, outputs = run(root, broker, args, "backlog")
            for i in range(args.parts):
                outputs.emit(inspection(i))
            broker.start()
            wait(link.publisher.connected.is_set, 15)
            start = time.perf_counter()
            ok = wait(lambda: link.outbox.delivered >= args.parts, 120)
            dt = time.perf_counter() - start
            rows.append(("backlog", args.parts, args.parts / dt, [], ok, None))
            link.publisher.stop()
            outputs.close()

            # paced at a line's rate
            link, outputs = run(root, broker, args, "paced")
            wait(link.publisher.connected.is_set, 10)
            sub.close()
            sub = Counter(broker.port, "edge-inspector/bench/result")  # the broker restarted
            period, nxt = 1.0 / args.rate, time.perf_counter()
            start = nxt
            for i in range(args.paced_parts):
                nxt += period
                outputs.emit(inspection(i))
                time.sleep(max(0.0, nxt - time.perf_counter()))
            ok = wait(lambda: link.outbox.delivered >= args.paced_parts, 60)
            dt = time.perf_counter() - start
            wait(lambda: sub.n >= args.paced_parts, 5)
            rows.append((f"paced {args.rate:g}/s", args.paced_parts, args.paced_parts / dt,
                         list(link.publisher.ack_ms), ok, sub.n))
            link.publisher.stop()
            outputs.close()
        finally:
            sub.close()
            broker.stop()
    print(f"MQTT through the outbox, QoS 1, local Mosquitto, inflight {args.inflight}, {os.cpu_count()} CPUs")
    print(f"{'run':<14}{'parts':>7}{'results/s':>11}{'decision->PUBACK p50 ms':>25}{'p99 ms':>9}"
          f"{'all PUBACKed':>14}{'subscriber got':>16}")
    for name, n, rate, ack, ok, got in rows:
        print(f"{name:<14}{n:>7}{rate:>11.0f}{pct(ack, 50):>25.2f}{pct(ack, 99):>9.2f}{ok!s:>14}"
              f"{'-' if got is None else got:>16}")
    print(f"\nwrite per part (inspection path): row alone p50 {pct(t_base, 50):.3f} ms "
          f"p99 {pct(t_base, 99):.3f} ms;"
          f" row + outbox p50 {pct(t_write, 50):.3f} ms p99 {pct(t_write, 99):.3f} ms")


if __name__ == "__main__":
    main()
