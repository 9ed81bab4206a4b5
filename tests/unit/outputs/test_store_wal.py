"""SQLite's automatic checkpoint fails silently: a write-ahead log that cannot be checkpointed is
reported (issue 13, 5). A real cause: a reader holding an old snapshot, so no checkpoint can pass it
and the log grows with every row."""

import sqlite3
import time

from structlog.testing import capture_logs

from edge_inspector.outputs.store import Store
from edge_inspector.service.doctor import check_daemon
from tests.unit.outputs.mqtt.test_outbox import inspection


def test_a_log_that_cannot_checkpoint_is_a_fault_until_the_reader_lets_go(tmp_path):
    path = tmp_path / "i.db"
    store = Store(path, wal_max_mb=0.05)
    store.emit(inspection())
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM inspections").fetchone()[0] == 1  # holds its snapshot
    wal = path.with_name("i.db-wal")
    clock = time.monotonic()
    with capture_logs() as logs:
        while store.rows < 40 or wal.stat().st_size <= store.wal_max_bytes:
            store.emit(inspection())
        clock += 10
        assert store.check_wal(now=clock) is not None
    assert "0.1 MB" in store.wal_fault or "frames" in store.wal_fault
    assert store.health()["state"] == "wal_not_checkpointed" and store.health()["wal_fault"]
    assert store.fault is None  # rows go on being recorded in the log
    assert [e["event"] for e in logs].count("store_wal_checkpoint_failing") == 1
    live = {"state": "running", "pid": 1, "uptime_s": 1, "counters": {"decisions": 9},
            "links": [store.health()]}
    assert check_daemon(None, live, "").result == "FAIL"
    reader.execute("COMMIT")
    reader.close()
    clock += 10
    assert store.check_wal(now=clock) is None and store.health()["state"] == "ok"
    store.emit(inspection())  # the log is reset and truncated back to the bound
    assert wal.stat().st_size <= store.wal_max_bytes
    store.close()


def test_a_log_within_its_bound_is_not_checkpointed_by_hand(tmp_path):
    store = Store(tmp_path / "i.db")
    for _ in range(5):
        store.emit(inspection())
    assert store.check_wal(now=1e9) is None and store.wal_checks_failed == 0
    store.close()
