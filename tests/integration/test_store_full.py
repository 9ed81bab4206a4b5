"""A station that cannot record says so and fail-safes every trigger; it recovers when a write
succeeds again (issue 13, 5). The disk is full at the SQLite level: a ``max_page_count`` no bigger
than the file on the store's own connection, a real SQLITE_FULL."""

import sqlite3
import threading

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.outputs.mqtt.status import state_of
from edge_inspector.service.doctor import check_daemon
from edge_inspector.service.handlers import live_status
from edge_inspector.service.notify import assess
from tests.helpers import wait_until


def fill_to_the_last_byte(conn: sqlite3.Connection) -> None:
    """A real SQLITE_FULL from now on: ``max_page_count`` at the file's size, its free room filled
    (run on the store's own connection, between two parts)."""
    conn.execute("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    for size in (4000, 500, 50, 1):  # the free room left in the pages, down to the last byte
        try:
            while True:
                conn.execute("INSERT INTO filler VALUES (randomblob(?))", (size,))
        except sqlite3.OperationalError:
            pass


def _store(station):
    return next(o for o in station.outputs.outputs if o.name == "store")


def test_a_full_store_is_a_station_fault_with_the_failsafe_and_it_recovers(station_config):
    cfg = load_config(station_config())
    station = Station.build(cfg)
    store = _store(station)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        assert wait_until(lambda: station.counters.decisions >= 3, 120)
        assert assess(station, 60).ok

        station.between_parts(lambda: fill_to_the_last_byte(store.db.conn))
        assert wait_until(lambda: station.outputs.failures["store"] >= 1, 120)
        health = assess(station, 60)
        assert (health.ok, health.state) == (False, "not_recording")  # no watchdog ping, STATUS says so
        assert state_of(station, station.versions)["state"] == "not_recording"
        assert store.health()["state"] == "failing"
        doctor = check_daemon(cfg, live_status(station, 60, 0.0, None), "")
        assert doctor.result == "FAIL" and "free space" in doctor.fix, doctor
        assert wait_until(lambda: [p["reason"] for p in list(station.last)[-2:]] == ["not_recorded"] * 2, 120)
        assert store.fault and store.failed >= 3  # the fail-safed parts could not be written either
        assert all(p["outcome"] == "NO-READ" for p in list(station.last)[-2:])

        judged = lambda: station.counters.outcomes["PASS"] + station.counters.outcomes["REJECT"]  # noqa: E731
        freed: dict[str, int] = {}

        def free() -> None:  # between two parts: how many were judged before the disk was freed
            store.db.conn.execute("PRAGMA max_page_count=1073741823")
            freed["judged"] = judged()

        station.between_parts(free)
        # a part judged (not fail-safed) after the disk was freed; the parts judged before the
        # fill (and one between a write that fit and the next that did not) do not count
        assert wait_until(lambda: "judged" in freed and store.fault is None and judged() > freed["judged"]
                          and store.rows >= 3 + 2, 120)
        assert wait_until(lambda: assess(station, 60).state in ("running", "idle"), 30)
    finally:
        station.request_stop("test")
        runner.join(120)
    assert not runner.is_alive()
    conn = sqlite3.connect(cfg.db_path)
    got = conn.execute("SELECT outcome, action, reason FROM inspections ORDER BY id").fetchall()
    conn.close()
    assert len(got) == station.counters.decisions - store.failed  # every write that did not fail
    assert ("NO-READ", "REJECT", "not_recorded") in got  # the first part after the disk freed
    assert got[-1][2] != "not_recorded"  # then inspected again
