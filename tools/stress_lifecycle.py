#!/usr/bin/env python3
"""Start and stop the real daemon many times and count the crashes (0 expected).

    python tools/stress_lifecycle.py [--cycles 200] [--jobs 2] [--stop-after 0.0:1.5]

Each cycle is ``python -m edge_inspector run`` as a subprocess on the demo product with everything
beside the loop busy: retention pruning rows and reject images every 50 ms against a tiny size cap
(and a backlog of old rows added before each cycle, so that pruning is under way when it stops),
the control socket answering status, pause and resume while the parts flow, MQTT publishing to a
real Mosquitto on a free loopback port (and taking ``set/pause``, ``set/resume``). The daemon is
stopped by SIGTERM at a random moment after it is ready (or ends by itself after ``--max-parts``,
one cycle in four). Then the cycle is judged:

- crash: the process died of a signal (SIGSEGV, SIGABRT, ...), or exited 139 (a shell's segfault);
- failure: any other exit status than 0, a hang (killed after 60 s), or no ``station_stopped`` line;
- corrupt: the database fails ``PRAGMA integrity_check``;
- not offline: the retained ``available`` topic is not ``offline`` after the clean exit.

Prints a table and exits 1 when any cycle crashed, failed, left a corrupt file or stayed online.
``--src DIR`` runs the daemon from another source tree (to reproduce a bug on an older commit);
``--set KEY=VALUE`` adds config overrides to every cycle.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_inspector.service.control import ControlError, request  # noqa: E402
from edge_inspector.synth.pcb import BoardDesign, make_board  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PREFIX = "stress"
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(root: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


class Watcher:
    """A subscriber that keeps the last retained ``available`` of every station, and sends commands."""

    def __init__(self, port: int) -> None:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.available: dict[str, str] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="stress-watcher")

        def on_connect(c, _u, _f, rc, _p):
            c.subscribe(f"{PREFIX}/+/available", qos=1)

        def on_message(_c, _u, msg):
            self.available[msg.topic.split("/")[1]] = msg.payload.decode(errors="replace")

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise SystemExit("the MQTT watcher could not subscribe")

    def command(self, station: str, name: str, payload: bytes = b"") -> None:
        self.client.publish(f"{PREFIX}/{station}/set/{name}", payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_product(root: Path) -> Path:
    design = BoardDesign(7)
    (root / "good").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "reference.png"), make_board(design, 0).image)
    for i in range(3):
        cv2.imwrite(str(root / "good" / f"good-{i}.png"), make_board(design, 10_000_000 + i).image)
    return root


def write_config(path: Path, station: str, data: Path, product: Path, port: int) -> Path:
    cfg = {
        "station": {"name": station, "data_dir": str(data)},
        "capture": {"kind": "demo", "design_seed": 7, "seed": random.randrange(10**6), "defect_rate": 0.5,
                    "interval_ms": 20},
        "regions": {"kind": "variation", "reference": str(product / "reference.png"),
                    "good_images": str(product / "good")},
        "images": {"max_total_mb": 0.2, "prune_every": 1},
        "service": {"retention": {"prune_every_s": 0.05, "check_disk_every_s": 0.05, "db_max_mb": 0.2,
                                  "batch_rows": 5, "min_free_mb": 0}},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": PREFIX, "stop_flush_s": 0.5,
                 "stats_interval_s": 0.5, "reconnect_max_s": 1},
        "logging": {"level": "info", "format": "json"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def add_backlog(db: Path, n: int) -> None:
    """``n`` rows from long ago, so that the first pruning pass of the cycle has work for a while."""
    if n <= 0 or not db.exists():
        return
    with sqlite3.connect(db, timeout=30) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='inspections'").fetchone():
            return
        tag = os.urandom(4).hex()
        conn.executemany("INSERT INTO inspections (part_id, outcome, action, reason, trigger_time, map) "
                         "VALUES (?, 'PASS', 'PASS', 'ok', 1.0, ?)",
                         [(f"old-{tag}-{i}", "m" * 200) for i in range(n)])


ACTIVITY = {"decision": "decisions", "rows_pruned": "rows_pruned", "reject_images_pruned": "images_pruned",
            "command": "commands", "mqtt_connected": "mqtt_connects"}


def activity(text: str) -> collections.Counter[str]:
    """What the daemon did in one cycle, from its JSON log: the work beside the loop was real."""
    got: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            e = json.loads(line)
        except ValueError:
            continue
        key = ACTIVITY.get(e.get("event"))
        if key:
            got[key] += int(e.get("removed", 1))
    return got


def one_cycle(n: int, cfg: Path, data: Path, station: str, args, watcher: Watcher,
              work: collections.Counter[str]) -> tuple[str, str]:
    """Run the daemon once; (verdict, detail)."""
    max_parts = random.randint(1, 15) if random.random() < 0.25 else None
    cmd = [sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg)]
    cmd += [f"--set={s}" for s in args.set] + (["--max-parts", str(max_parts)] if max_parts else [])
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONPATH": str(args.src)}
    err_path = data / f"cycle-{n}.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=str(args.src))
        sock = data / "control.sock"
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:  # ready: the control socket answers
            try:
                request(sock, "status", timeout=1.0)
                break
            except ControlError:
                time.sleep(0.02)
        if max_parts is None and proc.poll() is None:
            lo, hi = args.stop_after
            stop_at = time.monotonic() + random.uniform(lo, hi)
            while time.monotonic() < stop_at and proc.poll() is None:
                try:
                    request(sock, random.choice(["status", "status", "pause", "resume"]), timeout=1.0)
                except ControlError:
                    pass
                if random.random() < 0.2:
                    watcher.command(station, random.choice(["pause", "resume"]))
                time.sleep(random.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            return "failure", "hung: killed after 60 s"
    text = err_path.read_text(errors="replace")
    work.update(activity(text))
    if rc < 0 and signal.Signals(-rc) in CRASH_SIGNALS or rc == 139:
        return "crash", f"rc {rc}: " + text[-1500:]
    if rc != 0:
        return "failure", f"rc {rc}: " + text[-1500:]
    if '"station_stopped"' not in text:
        return "failure", "no station_stopped line: " + text[-800:]
    with sqlite3.connect(data / "inspections.db") as conn:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        return "corrupt", ok
    end = time.monotonic() + 5
    while watcher.available.get(station) != "offline" and time.monotonic() < end:
        time.sleep(0.02)
    if watcher.available.get(station) != "offline":
        return "not_offline", f"available is {watcher.available.get(station)!r}"
    err_path.unlink()
    return "ok", ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2, help="daemons running at once (each its own station)")
    p.add_argument("--stop-after", default="0.0:1.5", metavar="LO:HI",
                   help="SIGTERM a uniform random LO..HI seconds after the daemon is ready")
    p.add_argument("--src", type=Path, default=REPO, help="the source tree the daemon runs from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--backlog", type=int, default=2000, help="old rows added before each cycle, for "
                   "retention to delete while the daemon starts and stops")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    args = p.parse_args(argv)
    args.stop_after = tuple(float(x) for x in args.stop_after.split(":"))
    random.seed(args.seed)
    root = Path(tempfile.mkdtemp(prefix="stress-lifecycle-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    broker, port = start_broker(root)
    watcher = Watcher(port)
    product = write_product(root / "product")
    results: collections.Counter[str] = collections.Counter()
    work: collections.Counter[str] = collections.Counter()
    details: list[str] = []
    lock = threading.Lock()
    todo = iter(range(args.cycles))
    t0 = time.monotonic()

    def job(j: int) -> None:
        station, data = f"s{j}", root / f"s{j}"
        data.mkdir(exist_ok=True)
        while True:
            with lock:
                n = next(todo, None)
            if n is None:
                return
            cfg = write_config(data / "station.yaml", station, data, product, port)
            add_backlog(data / "inspections.db", args.backlog)
            verdict, detail = one_cycle(n, cfg, data, station, args, watcher, work)
            with lock:
                results[verdict] += 1
                if detail:
                    details.append(f"cycle {n} ({station}) {verdict}: {detail}")
                done = sum(results.values())
                if done % 20 == 0 or verdict != "ok":
                    sys.stderr.write(f"{done}/{args.cycles} {dict(results)}\n")

    threads = [threading.Thread(target=job, args=(j,)) for j in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    watcher.close()
    broker.terminate()
    broker.wait(10)
    elapsed = time.monotonic() - t0
    for line in details[:20]:
        sys.stderr.write(line + "\n")
    summary = {"starts": sum(results.values()), "clean_stops": results["ok"], "crashes": results["crash"],
               "failures": results["failure"], "corrupt": results["corrupt"],
               "not_offline": results["not_offline"], **{k: work[k] for k in ACTIVITY.values()},
               "seconds": round(elapsed, 1), "src": str(args.src)}
    sys.stdout.write(json.dumps(summary) + "\n")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if summary["clean_stops"] == summary["starts"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
