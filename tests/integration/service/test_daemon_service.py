"""The daemon under a stand-in systemd: sd_notify, the watchdog, the control socket, SIGHUP."""

from __future__ import annotations

import signal
import sqlite3

import pytest
import yaml

from edge_inspector.service.control import ControlError, request
from tests.helpers import wait_until


def rows(db):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    out = [dict(r) for r in conn.execute("SELECT part_id, outcome, reason, config_hash FROM inspections "
                                         "ORDER BY id")]
    conn.close()
    return out


def test_ready_status_watchdog_pause_resume_and_stopping(station_config, daemon):
    d = daemon(station_config(capture={"interval_ms": 40}), watchdog_usec=1_000_000)
    d.wait_ready()
    first = d.notify.wait_for("READY")
    assert first["READY"] == "1"
    d.wait_decisions(3)
    # pings every half period (0.5 s) while the loop makes progress: wait for five, then the
    # typical gap (a loaded machine may delay one ping; the median is the daemon's own rhythm)
    assert wait_until(lambda: len(d.notify.times("WATCHDOG")) >= 5, 60)
    pings = d.notify.times("WATCHDOG")
    gaps = sorted(b - a for a, b in zip(pings, pings[1:]))
    assert gaps[len(gaps) // 2] < 0.9, gaps
    assert all(m["WATCHDOG"] == "1" for _, m in d.notify.messages if "WATCHDOG" in m)
    assert d.notify.wait_for("STATUS", value="PASS")

    st = d.status()
    assert st["live"] and st["state"] in ("running", "idle") and st["healthy"]
    assert st["cameras"][0]["name"] == "demo-cam" and st["links"][0]["name"] == "store"
    assert st["counters"]["decisions"] >= 3 and st["last"] and st["config"]["path"]

    assert request(d.socket_path, "pause")["paused"] is True
    n = d.status()["counters"]["decisions"]
    d.wait_decisions(n + 5)  # the part in hand when the pause came is still inspected
    assert d.status()["state"] == "paused"
    d.notify.wait_for("STATUS", value="paused")
    assert len(d.notify.times("WATCHDOG")) > len(pings)  # a paused station is healthy
    assert request(d.socket_path, "resume")["paused"] is False
    n = d.status()["counters"]["decisions"]
    d.wait_decisions(n + 3)

    assert d.terminate() == 0
    stopping = d.notify.wait_for("STOPPING")
    assert stopping["STOPPING"] == "1"
    got = rows(d.cfg.db_path)
    paused = [r for r in got if r["reason"] == "paused"]
    assert len(paused) >= 4 and all(r["outcome"] == "NO-READ" for r in paused)
    # after resume, inspected again
    assert got[-1]["reason"] != "paused"
    stopped = d.wait_event("station_stopped")
    assert stopped["triggers"] == stopped["decisions"] == len(got)
    assert not d.socket_path.exists()
    with pytest.raises(ControlError, match="no one listens on"):
        request(d.socket_path, "status")


def test_a_stuck_judge_stops_the_watchdog_pings(station_config, daemon):
    cfg = station_config(capture={"interval_ms": 50}, policy={"deadline_ms": 60000},
                         service={"watchdog": {"stuck_after_s": 1.0, "status_every_s": 0.5}})
    d = daemon(cfg, watchdog_usec=300_000, hang_at_seq=4)
    d.wait_ready()
    d.notify.wait_for("WATCHDOG")
    stuck = d.notify.wait_for("STATUS", value="stuck", timeout=20)
    assert "judge has been busy" in stuck["STATUS"] or "one part" in stuck["STATUS"]
    t_stuck = d.notify.times("STATUS")[-1]
    # the notifier is alive and still says "stuck" four ping periods later, and never pinged
    assert wait_until(lambda: any(t > t_stuck + 1.2 for t in d.notify.times("STATUS")), 60)
    assert not [t for t in d.notify.times("WATCHDOG") if t > t_stuck]
    assert d.status()["state"] == "stuck" and not d.status()["healthy"]
    d.proc.send_signal(signal.SIGKILL)  # what systemd does after WatchdogSec (SIGABRT, then SIGKILL)
    d.proc.wait(10)


def test_sighup_reloads_a_good_config_and_refuses_a_bad_one(station_config, daemon):
    path = station_config(capture={"interval_ms": 30})
    d = daemon(path)
    d.wait_ready()
    d.wait_decisions(3)
    old_fp = d.status()["config"]["fingerprint"]

    data = yaml.safe_load(path.read_text())
    data["policy"] = {"deadline_ms": 3000, "reject_threshold": 0.6}
    data["capture"]["seed"] = 1  # needs a restart: reported, not applied
    path.write_text(yaml.safe_dump(data))
    mark = len(d.events())
    d.proc.send_signal(signal.SIGHUP)
    applied = d.wait_event("reload_applied", after=mark)
    assert applied["old_config"] == old_fp and applied["config"] != old_fp
    assert d.wait_event("reload_needs_restart", after=mark)["sections"] == ["capture"]
    new_fp = applied["config"]
    n = d.status()["counters"]["decisions"]
    st = d.wait_decisions(n + 3)
    assert st["config"]["fingerprint"] == new_fp and st["reload"]["state"] == "applied"

    path.write_text(path.read_text() + "policy_typo: 1\n")
    mark = len(d.events())
    d.proc.send_signal(signal.SIGHUP)
    refused = d.wait_event("reload_refused", after=mark)
    assert "policy_typo: unknown key" in refused["error"]
    n = d.status()["counters"]["decisions"]
    st = d.wait_decisions(n + 3)
    assert st["config"]["fingerprint"] == new_fp and st["reload"]["state"] == "refused"
    mark = len(d.events())
    assert request(d.socket_path, "reload")["ok"]  # the control socket's reload, refused the same way
    assert d.wait_event("reload_refused", after=mark)["why"] == "control socket"

    assert d.terminate() == 0
    got = rows(d.cfg.db_path)
    stopped = d.wait_event("station_stopped")
    assert stopped["triggers"] == stopped["decisions"] == len(got)  # no part lost across reloads
    hashes = [r["config_hash"] for r in got]
    assert hashes[0] == old_fp and hashes[-1] == new_fp
    switch = hashes.index(new_fp)
    assert set(hashes[:switch]) == {old_fp} and set(hashes[switch:]) == {new_fp}
