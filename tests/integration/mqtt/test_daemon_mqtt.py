"""The daemon (the real CLI, a subprocess) against a real Mosquitto, checked by a separate subscriber."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.slow

PREFIX, STATION = "ei-test", "test"
BASE = f"{PREFIX}/{STATION}"



def db_rows(db, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()


def part_ids(db) -> list[str]:
    return [r[0] for r in db_rows(db, "SELECT part_id FROM inspections ORDER BY id")]


def availability(sub) -> list[str]:
    return [p.decode() for p, _ in sub.on("available")]


def test_results_state_stats_and_availability(broker, subscriber, daemon):
    sub = subscriber(broker)
    # 10 parts 150 ms apart: the run lasts at least 1.5 s however fast the machine inspects, so the
    # 0.5 s stats period fires (with a fast regions stage 10 back-to-back parts took 0.3 s)
    d = daemon(broker, "mqtt.stats_interval_s=0.5", max_parts=10, interval_ms=150)
    assert d.wait(90) == 0
    db = d.db
    ids = part_ids(db)
    assert len(ids) == 10
    assert wait_until(lambda: len(sub.results()) >= 10 and availability(sub)[-1:] == ["offline"], 10)

    results = sub.results()
    assert [r["id"] for r in results] == ids  # each part once, in decision order
    r = results[0]
    for key in ("id", "decision", "action", "reason", "confidence", "defect_type", "regions", "timings_ms",
                "model", "config", "recipe", "recipe_version", "station", "decided_time"):
        assert key in r, key
    assert r["station"] == STATION and r["decision"] in ("PASS", "REJECT") and "total" in r["timings_ms"]
    assert {x["decision"] for x in results} == {"PASS", "REJECT"}
    assert any(x["regions"] for x in results if x["decision"] == "REJECT")

    av = availability(sub)
    assert av[0] == "online" and av[-1] == "offline"  # Home Assistant knows online and offline only
    assert "stopped" not in av
    state = json.loads(sub.on("state")[-1][0])
    assert state["state"] == "running" and state["model"] == r["model"]
    assert state["camera"]["name"] == "demo-cam" and "state" in state["plc"]
    stats = [json.loads(p) for p, _ in sub.on("stats")]
    assert stats, "no stats message"
    last = stats[-1]
    for key in ("parts", "rejects", "no_reads", "latency_ms", "queue_depth", "free_disk_mb", "outbox"):
        assert key in last, key
    assert set(last["latency_ms"]) == {"p50", "p99", "n"}

    # the outbox: every row delivered (PUBACK) before the clean exit
    assert db_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL") == [(0,)]

    # retained: availability and state; results are not retained
    late = subscriber(broker)
    assert wait_until(lambda: late.on("available") and late.on("state"), 5)
    assert late.on("available")[-1] == (b"offline", True) and late.on("state")[-1][1] is True
    # a message published now reaches the late subscriber after every retained one
    late.client.publish(f"{BASE}/marker", b"after the retained ones", qos=1)
    assert wait_until(lambda: late.on("marker"), 10)
    assert late.on("result") == []


def test_last_will_after_sigkill(broker, subscriber, daemon):
    sub = subscriber(broker)
    d = daemon(broker, interval_ms=100)
    assert wait_until(lambda: "online" in availability(sub), 60), d.log_path.read_text()[-3000:]
    d.kill()
    assert wait_until(lambda: availability(sub)[-1:] == ["offline"], 15), availability(sub)
    late = subscriber(broker)
    assert wait_until(lambda: late.on("available"), 5)
    assert late.on("available")[-1] == (b"offline", True)


def test_broker_outage_loses_no_result(mosquitto, subscriber, daemon):
    broker = mosquitto()
    sub = subscriber(broker)
    d = daemon(broker, "mqtt.stop_flush_s=15", interval_ms=40)
    db = d.db
    assert wait_until(lambda: len(sub.result_ids()) >= 5, 60), d.log_path.read_text()[-3000:]
    broker.stop()
    seen = len(part_ids(db))
    assert wait_until(lambda: len(part_ids(db)) >= seen + 8, 30)  # the line goes on deciding
    undelivered = db_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL")[0][0]
    assert undelivered >= 5
    broker.start()  # same port, same persisted sessions
    target = len(part_ids(db)) + 5
    assert wait_until(lambda: len(sub.result_ids()) >= target, 45), (len(sub.result_ids()), target)
    assert d.terminate(60) == 0
    ids = part_ids(db)
    assert wait_until(lambda: set(ids) <= sub.result_ids(), 15), set(ids) - sub.result_ids()
    assert len(sub.result_ids()) == len(ids)  # once per part id after de-duplication
    events = [e["event"] for e in d.events()]
    assert events.count("mqtt_connected") >= 2 and "mqtt_disconnected" in events
    assert availability(sub)[-1] == "offline" and availability(sub).count("online") >= 2


def test_sigkill_mid_run_then_restart_publishes_the_rest(broker, subscriber, daemon):
    sub = subscriber(broker)
    first = daemon(broker, interval_ms=40)
    db = first.db
    assert wait_until(lambda: len(sub.result_ids()) >= 3, 60), first.log_path.read_text()[-3000:]
    broker.stop()  # so that results pile up in the outbox before the kill
    seen = len(part_ids(db))
    assert wait_until(lambda: len(part_ids(db)) >= seen + 6, 30)
    first.kill()
    before = part_ids(db)
    pending = db_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL")[0][0]
    assert pending >= 6 and not set(before) <= sub.result_ids()
    # every part in the inspections table has its message in the outbox (same transaction)
    assert {r[0] for r in db_rows(db, "SELECT part_id FROM outbox")} >= set(before) - sub.result_ids()

    broker.start()
    second = daemon(broker, max_parts=3)
    assert second.wait(90) == 0
    ids = part_ids(db)
    assert len(ids) == len(before) + 3
    assert wait_until(lambda: set(ids) <= sub.result_ids(), 15), set(ids) - sub.result_ids()
    assert len(sub.result_ids()) == len(ids)
    assert db_rows(db, "SELECT COUNT(*) FROM outbox WHERE delivered IS NULL") == [(0,)]


def test_set_commands_pause_resume_and_bad_payloads_ignored(broker, subscriber, daemon, tmp_path):
    recipe = tmp_path / "pcb.yaml"
    recipe.write_text("product: x\n")
    sub = subscriber(broker)
    pub = sub.client
    # a retained command left on the broker reaches the daemon with the retain flag at every
    # (re)connect: it must not pause the station
    pub.publish(f"{BASE}/set/pause", b"stale", qos=1, retain=True).wait_for_publish(5)
    d = daemon(broker, f"mqtt.recipes={{pcb: {recipe}}}", "mqtt.command_max_bytes=64",
               "mqtt.commands=[pause, resume, recipe]", interval_ms=80)
    assert wait_until(lambda: sub.on("state") and len(sub.results()) >= 2, 60), d.log_path.read_text()[-3000:]
    pub.publish(f"{BASE}/set/pause", b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained

    def states():
        return [json.loads(p)["state"] for p, _ in sub.on("state")]

    assert json.loads(sub.on("state")[-1][0])["state"] == "running"
    pub.publish(f"{BASE}/set/pause", b"changeover", qos=1)
    assert wait_until(lambda: states()[-1] == "paused", 10)
    n = len(sub.results())
    assert wait_until(lambda: len(sub.results()) >= n + 3, 20)
    paused = [r for r in sub.results()[n + 1:]]
    assert paused and all((r["decision"], r["reason"]) == ("NO-READ", "paused") for r in paused)

    bad = [(f"{BASE}/set/pause", b"\xff\xfe\x00", False),  # not UTF-8
           (f"{BASE}/set/recipe", b"x" * 1000, False),  # over the size limit
           (f"{BASE}/set/reboot", b"now", False),  # not a command
           (f"{BASE}/set/recipe", b"../../etc/passwd", False)]  # not a recipe name
    for topic, payload, retain in bad:
        pub.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    # well formed, refused by the command table's handlers (the same as on the control socket)
    pub.publish(f"{BASE}/set/recipe", b"other", qos=1).wait_for_publish(5)  # not in mqtt.recipes
    pub.publish(f"{BASE}/set/recipe", b"pcb", qos=1).wait_for_publish(5)  # listed, but the judge has none

    def events(name):
        return [e for e in d.events() if e["event"] == name]

    assert wait_until(lambda: len(events("mqtt_command_ignored")) >= len(bad) + 1, 10)
    assert wait_until(lambda: len(events("mqtt_command_refused")) >= 2, 10)
    assert states()[-1] == "paused"  # none of them resumed the station
    whys = " | ".join(e["why"] for e in events("mqtt_command_ignored"))
    for part in ("UTF-8", "over the limit", "unknown command", "recipe name", "retained"):
        assert part in whys, (part, whys)
    refused = " | ".join(e["why"] for e in events("mqtt_command_refused"))
    assert "not in mqtt.recipes" in refused and "anomaly judge has no recipe" in refused

    def replies(cmd):
        return [r for r in (json.loads(p) for p, _ in sub.on("reply")) if r["cmd"] == cmd]

    assert wait_until(lambda: len(replies("recipe")) >= 2, 10)  # every command is answered
    assert {"cmd": "pause", "ok": True, "paused": True} in replies("pause")
    assert any(not r["ok"] and "no recipe" in r["error"] for r in replies("recipe"))

    pub.publish(f"{BASE}/set/status", b"", qos=1)  # the live state, as `edge-inspector ctl status`
    assert wait_until(lambda: replies("status"), 10)
    status = replies("status")[0]["status"]
    assert status["paused"] and status["paused_reason"] == "changeover" and status["live"]
    # none of them resumed the station: the parts decided after them are still paused
    n = len(sub.results())
    assert wait_until(lambda: len(sub.results()) >= n + 3, 20)
    assert all(r["reason"] == "paused" for r in sub.results()[n + 1:]) and states()[-1] == "paused"

    pub.publish(f"{BASE}/set/resume", b"", qos=1)
    assert wait_until(lambda: states()[-1] == "running", 10)
    n = len(sub.results())
    assert wait_until(lambda: len(sub.results()) >= n + 3, 20)
    assert all(r["reason"] != "paused" for r in sub.results()[n + 1:])
    assert d.terminate(60) == 0
