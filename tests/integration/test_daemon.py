"""The daemon end to end on the demo product."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.errors import JudgeError
from tests.helpers import wait_until


def rows(cfg):
    conn = sqlite3.connect(cfg.db_path)
    conn.row_factory = sqlite3.Row
    out = [dict(r) for r in conn.execute("SELECT * FROM inspections ORDER BY id")]
    conn.close()
    return out


def test_fifty_parts_one_decision_each_and_defects_rejected(station_config):
    cfg = load_config(station_config())
    station = Station.build(cfg)
    truth = {}
    original = station.source.frames

    def recording(parts, stop):
        for frame in original(parts, stop):
            truth[frame.part_id] = frame.meta["truth"]
            yield frame

    station.source.frames = recording
    assert station.run(max_parts=50, install_signals=False) == 0
    got = rows(cfg)
    assert len(got) == 50 == len({r["part_id"] for r in got}) == len(truth)
    assert station.counters.triggers == station.counters.decisions == 50
    defective = [r for r in got if truth[r["part_id"]]]
    good = [r for r in got if not truth[r["part_id"]]]
    assert defective and good
    assert all(r["outcome"] == "REJECT" for r in defective)
    assert all(r["outcome"] == "PASS" for r in good)
    assert all(r["image_path"] and os.path.exists(r["image_path"]) for r in defective)
    assert all(r["config_hash"] == cfg.fingerprint() for r in got)


def test_a_judge_that_raises_gives_no_reads_not_silence(station_config):
    cfg = load_config(station_config())
    station = Station.build(cfg)

    def broken(frame, regions, deadline):
        raise JudgeError("GPU fell off the bus")

    station.inspector.judge.judge.judge = broken
    station.run(max_parts=5, install_signals=False)
    got = rows(cfg)
    assert [(r["outcome"], r["reason"], r["action"]) for r in got] == [("NO-READ", "judge_error", "REJECT")] * 5


def test_drop_oldest_turns_overflow_into_no_reads(station_config):
    cfg = load_config(station_config(pipeline={"queue_size": 1}, capture={"buffer": "drop_oldest"}))
    station = Station.build(cfg)
    slow = station.inspector.regions.find

    def slow_find(frame):  # busy until two more parts were triggered: the queue (1) overflows
        wait_until(lambda: station.counters.triggers >= min(12, frame.seq + 2), 60)
        return slow(frame)

    station.inspector.regions.find = slow_find
    station.run(max_parts=12, install_signals=False)
    got = rows(cfg)
    assert len(got) == 12 == station.counters.decisions
    overflow = [r for r in got if r["reason"] == "queue_overflow"]
    assert overflow and len(overflow) == station.counters.overflow
    assert all(r["outcome"] == "NO-READ" and r["action"] == "REJECT" for r in overflow)


def test_sigterm_finishes_the_parts_in_flight_and_exits_zero(station_config, tmp_path):
    cfg_path = station_config(capture={"interval_ms": 30})
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg_path),
                             "--set", "logging.format=json", "--set", "logging.level=info"],
                            stderr=subprocess.PIPE, text=True)
    db = load_config(cfg_path).db_path
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as c:
                    if c.execute("SELECT COUNT(*) FROM inspections").fetchone()[0] >= 5:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    stopped = [e for e in events if e["event"] == "station_stopped"][-1]
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
    assert stopped["triggers"] == stopped["decisions"] == n >= 5
    assert any(e["event"] == "stopping" and e["why"] == "SIGTERM" for e in events)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shutdown_in_order_each_step_once_and_no_thread_left_on_the_store(station_config):
    import threading

    cfg = load_config(station_config(), ["mqtt.host=127.0.0.1", f"mqtt.port={free_port()}",
                                         "service.retention.prune_every_s=0.01",
                                         "service.retention.check_disk_every_s=0.01"])
    station = Station.build(cfg)
    steps, seen = [], {}
    names = [s.name for s in station.services]
    assert names == ["mqtt", "retention", "reload", "control", "systemd"]

    def record(name, fn, check=None):
        def wrapped(*a, **kw):
            steps.append(name)
            if check:
                seen[name] = check()
            return fn(*a, **kw)
        return wrapped

    def alive():
        return sorted(t.name for t in threading.enumerate()
                      if t.name in ("capture", "worker", "mqtt-outbox", "retention", "reload", "control",
                                    "systemd-notify"))

    station.source.close = record("source", station.source.close, alive)
    for svc in station.services:
        svc.teardown = record(svc.name, svc.teardown)
    station.inspector.close = record("stages", station.inspector.close)
    store = next(o for o in station.outputs.outputs if o.name == "store")
    store.close = record("store", store.close, alive)
    assert station.run(max_parts=5, install_signals=False) == 0
    assert steps == ["source", "systemd", "control", "reload", "retention", "mqtt", "stages", "store"]
    assert "capture" not in seen["source"] and "worker" not in seen["source"]  # the loop ended first
    assert seen["store"] == []  # nothing that could use SQLite runs when the store's connection closes
    station.outputs.close()  # a second close is a no-op: each output is closed once
    assert steps.count("store") == 1


def test_no_row_keeps_the_path_of_an_image_that_retention_deleted(station_config):
    import threading

    from tests.helpers import wait_until

    cfg = load_config(station_config(capture={"defect_rate": 0.9, "interval_ms": 20},
                                     # a reject keeps about 0.37 MB (its JPEG and its frame): 0.5 MB held
                                     # one, and a part in flight (its files counted, its row not yet
                                     # written) could make retention prune that one too
                                     images={"max_total_mb": 1.5, "prune_every": 1},
                                     service={"retention": {"check_disk_every_s": 0.02, "min_free_mb": 0}}))
    station = Station.build(cfg)
    retention = station.services.get("retention")
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        assert wait_until(lambda: retention.images_pruned >= 3 and station.counters.decisions >= 20, 120)
    finally:
        station.request_stop("test")
        runner.join(60)
    got = rows(cfg)
    rejects = [r for r in got if r["outcome"] != "PASS"]
    assert len(rejects) >= 5
    assert all(r["image_path"] is None or os.path.exists(r["image_path"]) for r in got)
    assert any(r["image_path"] is None for r in rejects) and any(r["image_path"] for r in rejects)


def test_startup_without_the_reference_is_a_clear_error(station_config, tmp_path):
    cfg_path = station_config(regions={"reference": str(tmp_path / "missing.png")})
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "reference image" in proc.stderr and "missing.png" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    import threading

    before = {t.name for t in threading.enumerate()}
    yield

    def leftover() -> set[str]:
        return ({t.name for t in threading.enumerate() if t.is_alive()} - before) & {"capture", "worker"}

    assert wait_until(lambda: not leftover(), 10), leftover()
