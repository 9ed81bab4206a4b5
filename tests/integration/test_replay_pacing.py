"""A paced replay (buffer: wait) triggers the next part once the previous one is decided (issue 13, 9)."""

import sqlite3
import time

from edge_inspector.config import load_config
from edge_inspector.daemon import Station

DEADLINE_MS = 2000.0
JUDGE_S = 1.2  # more than half the deadline: a part that waits one inspection in the queue times out


def test_a_slow_judge_decides_every_replayed_part_none_times_out(station_config):
    cfg = load_config(station_config(policy={"deadline_ms": DEADLINE_MS}))
    station = Station.build(cfg)
    inner = station.inspector.judge.judge
    original = inner.judge

    def slow(frame, regions, deadline):
        time.sleep(JUDGE_S)  # a judge this slow, whatever the machine: the pacing must allow for it
        return original(frame, regions, deadline)

    inner.judge = slow
    assert station.run(max_parts=5, install_signals=False) == 0
    conn = sqlite3.connect(cfg.db_path)
    got = conn.execute("SELECT part_id, outcome, reason FROM inspections ORDER BY id").fetchall()
    conn.close()
    assert len(got) == 5 == station.counters.decisions
    assert [r for r in got if r[2] == "timeout"] == []
    assert all(r[1] in ("PASS", "REJECT") for r in got)
