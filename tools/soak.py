#!/usr/bin/env python3
"""Soak the real station under faults on a schedule and check its invariants (issue 13).

    python tools/soak.py [--parts 300] [--cycles 2] [--interval-ms 20] [--seed 1]

The real daemon (``python -m edge_inspector run``, the demo source) as a subprocess, a real
Mosquitto on a free loopback port (``tools/starters.py``, the same starter as the MQTT tests) and
the SQLite store. While the parts flow, the faults run in turn, ``--cycles`` times each:

- ``sigkill``: SIGKILL, then ``PRAGMA integrity_check`` on the file, then a restart;
- ``broker``: the broker is stopped while parts are decided, then started again;
- ``sigterm``: SIGTERM (the daemon must exit 0 after deciding every part it triggered), restart.

At the end (a last SIGTERM) it checks: every trigger of a run that ended by SIGTERM has exactly one
row (the run's ``station_stopped`` triggers against its rows, by the run tag of the part ids); no
part has two rows; every row was published on ``.../result`` at least once; the database passed
its integrity check after every kill; every recorded action is the gate's (without a PLC link:
the outcome's, and the fail-safe REJECT for a NO-READ). It prints a table of tried / lost /
duplicated / wrongly passed per fault and a JSON line, and exits 1 on any violation.

Scope (honest): no PLC bridge in simavr yet (so the parts in flight at a SIGKILL are not counted:
without a bridge nothing outside the process saw their trigger), no judge faults, no corrupt
frames, no disk full here (``tests/integration/test_store_full.py`` covers that one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.starters import Broker, wait_until  # noqa: E402
from tools.stress_lifecycle import write_product  # noqa: E402

PREFIX = "soak"
STATION = "soak"
FAULTS = ("sigkill", "broker", "sigterm")


class Results:
    """A separate subscriber (persistent session, QoS 1) counting every result id it receives."""

    def __init__(self, port: int) -> None:
        from paho.mqtt import client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-{os.getpid()}",
                                  clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        subscribed = threading.Event()

        def on_connect(c, _u, _f, rc, _p):
            if not rc.is_failure:
                c.subscribe(f"{PREFIX}/{STATION}/result", qos=1)

        def on_message(_c, _u, msg):
            try:
                part = json.loads(msg.payload)["id"]
            except (ValueError, KeyError, TypeError):
                return
            with self.lock:
                self.ids[part] += 1

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("the soak's subscriber could not subscribe")

    def seen(self) -> set[str]:
        with self.lock:
            return set(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_config(path: Path, data: Path, product: Path, port: int, interval_ms: float, seed: int) -> Path:
    path.write_text(yaml.safe_dump({
        "station": {"name": STATION, "data_dir": str(data)},
        "capture": {"kind": "demo", "design_seed": 7, "seed": seed, "defect_rate": 0.4,
                    "interval_ms": interval_ms},
        "regions": {"kind": "variation", "reference": str(product / "reference.png"),
                    "good_images": str(product / "good")},
        "service": {"retention": {"rows_max_age_days": None, "db_max_mb": None, "min_free_mb": 0}},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": PREFIX, "reconnect_max_s": 1,
                 "stop_flush_s": 1.0},
        "logging": {"level": "info", "format": "json"},
    }))
    return path


class Run:
    """One daemon process, its log, and the fault that ended it."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.log = log
        self.ended_by = ""
        self._err = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=self._err, cwd=str(REPO),
                                     env={**os.environ, "PYTHONPATH": str(REPO)})

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None
        finally:
            self._err.close()

    def events(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def tag(self) -> str | None:
        """The run tag of this process's part ids (``<time>-<tag>-<seq>``)."""
        part = next((e["part_id"] for e in self.events() if e.get("event") == "decision"), None)
        return part.split("-")[1] if part else None


def rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT id, part_id, outcome, action FROM inspections ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def soak(args: argparse.Namespace, root: Path) -> dict:
    broker = Broker(root / "broker").start()
    results = Results(broker.port)
    product = write_product(root / "product")
    data = root / "data"
    cfg = write_config(root / "station.yaml", data, product, broker.port, args.interval_ms, args.seed)
    db = data / "inspections.db"
    schedule = [f for _ in range(args.cycles) for f in FAULTS]
    step = max(5, args.parts // (len(schedule) + 1))
    runs: list[Run] = []
    table = {f: Counter() for f in (*FAULTS, "end")}
    violations: list[str] = []
    broker_windows: list[tuple[int, int]] = []

    def start() -> Run:
        run = Run(cfg, root / f"daemon{len(runs)}.log")
        runs.append(run)
        return run

    def grow(n: int, what: str) -> None:
        goal = len(rows(db)) + n
        if not wait_until(lambda: len(rows(db)) >= goal or runs[-1].proc.poll() is not None, 300):
            raise SystemExit(f"no progress before {what}: {runs[-1].log.read_text()[-2000:]}")
        if runs[-1].proc.poll() is not None:
            raise SystemExit(f"the daemon exited by itself before {what}: {runs[-1].log.read_text()[-2000:]}")

    def term(run: Run, fault: str) -> None:
        run.proc.send_signal(signal.SIGTERM)
        rc = run.wait(120)
        run.ended_by = fault
        if rc != 0:
            violations.append(f"{fault}: SIGTERM exit status {rc} (expected 0)")
            table[fault]["errors"] += 1

    run = start()
    for fault in schedule:
        grow(step, fault)
        table[fault]["tried"] += 1
        if fault == "sigkill":
            run.proc.kill()
            run.wait(30)
            run.ended_by = fault
            ok = integrity(db)
            if ok != "ok":
                violations.append(f"sigkill: integrity_check after the kill: {ok}")
                table[fault]["errors"] += 1
            run = start()
        elif fault == "broker":
            first = (rows(db) or [(0,)])[-1][0]
            broker.stop()
            grow(max(3, step // 2), "the broker's restart")
            broker_windows.append((first, rows(db)[-1][0]))
            broker.start()
        else:
            term(run, fault)
            run = start()
    grow(step, "the end")
    table["end"]["tried"] += 1
    term(run, "end")

    got = rows(db)
    ids = [r[1] for r in got]
    wait_until(lambda: set(ids) <= results.seen(), 60)  # at least once: the outbox drains on restart
    seen = results.seen()
    results.close()
    broker.stop()

    by_tag: dict[str, list[tuple]] = defaultdict(list)
    for r in got:
        by_tag[r[1].split("-")[1]].append(r)

    def fault_of(row: tuple) -> str:
        for first, last in broker_windows:
            if first < row[0] <= last:
                return "broker"
        tag = row[1].split("-")[1]
        return next((r.ended_by for r in runs if r.tag() == tag), "end")

    for part, n in Counter(ids).items():
        if n > 1:
            violations.append(f"duplicated: {part} has {n} rows")
            table["end"]["duplicated"] += 1
    for r in got:
        _id, part, outcome, action = r
        expected = "REJECT" if outcome == "NO-READ" else outcome
        if action != expected:
            violations.append(f"{part}: recorded action {action} for a {outcome} without a gate")
            table[fault_of(r)]["wrongly passed" if action == "PASS" else "errors"] += 1
        if part not in seen:
            violations.append(f"{part}: never published")
            table[fault_of(r)]["lost"] += 1
    for run in runs:  # every trigger of a cleanly stopped run has its row
        if run.ended_by not in ("sigterm", "end"):
            continue
        stopped = [e for e in run.events() if e.get("event") == "station_stopped"]
        if not stopped:
            violations.append(f"{run.log.name}: no station_stopped after SIGTERM")
            continue
        triggers, tag = stopped[-1].get("triggers", 0), run.tag()
        written = len(by_tag.get(tag, [])) if tag else 0
        if triggers != written:
            violations.append(f"{run.log.name}: {triggers} triggers, {written} rows")
            table[run.ended_by]["lost"] += max(0, triggers - written)
            table[run.ended_by]["duplicated"] += max(0, written - triggers)
    return {"parts": len(got), "runs": len(runs), "published": len(seen & set(ids)),
            "violations": violations, "table": {k: dict(v) for k, v in table.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=300, help="about this many parts in all")
    ap.add_argument("--cycles", type=int, default=2, help="times each fault runs")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="time between two triggers")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ei-soak-"))
    try:
        out = soak(args, root)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    cols = ("tried", "lost", "duplicated", "wrongly passed", "errors")
    lines = [f"{'fault':10}" + "".join(f"{c:>16}" for c in cols)]
    for fault, counts in out["table"].items():
        lines.append(f"{fault:10}" + "".join(f"{counts.get(c, 0):>16}" for c in cols))
    lines.append(f"{out['parts']} parts in {out['runs']} runs, {out['published']} published; "
                 f"{len(out['violations'])} violations")
    lines += [f"  {v}" for v in out["violations"][:20]]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stdout.write(json.dumps(out) + "\n")
    return 1 if out["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
