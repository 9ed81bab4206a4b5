"""tools/soak.py: a short run under every fault of its schedule, no violation (part of `make test`).

With the bridge firmware in simavr when it is built (`make firmware`, which `make test` runs), without
it (and without its two faults, bridge_reset and line_noise) otherwise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_inspector.plc import sim as simmod
from tools.starters import MOSQUITTO

REPO = Path(__file__).resolve().parents[3]
BRIDGE = simmod.unavailable() is None

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason="mosquitto is missing (tools/install_system_deps.sh)")
def test_a_short_soak_loses_duplicates_and_wrongly_passes_nothing():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "soak.py"), "--parts", "200", "--cycles", "2"],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    print(r.stderr[-4000:])  # the table, shown when an assertion below fails
    assert got["violations"] == [] and got["parts"] >= 200 and got["published"] == got["parts"]
    table = got["table"]
    faults = ["sigkill", "broker", "sigterm", "judge_stall", "judge_fail", "disk_full", "wal_stuck"]
    faults += ["bridge_reset", "line_noise"] if BRIDGE else []
    assert all(table[f]["tried"] == 2 for f in faults) and table["end"]["tried"] == 1, table
    assert got["runs"] == 5  # a start after each kill and each SIGTERM
    assert all(c.get(k, 0) == 0 for c in table.values() for k in ("lost", "duplicated", "wrongly passed"))
    # each fault bit: NO-READs under the judge's faults, rows the full disk could not take, every
    # hostile frame a NO-READ
    assert table["judge_stall"]["NO-READ"] > 0 and table["judge_fail"]["NO-READ"] > 0
    assert got["unrecorded"] > 0 and table["hostile"]["tried"] == table["hostile"]["NO-READ"] > 0
    if BRIDGE:
        bridge = got["bridge"]
        # every part the bridge took, applied or fail-safed; but a DECIDE on the wire when the bridge
        # reset cannot be proven either way (the host never re-sends it: it may have acted), and the
        # soak counts it as uncovered, not lost
        assert bridge["armed"] == bridge["resolved"] + bridge["uncovered_after_reset"] and bridge["resolved"] > 0
        assert bridge["boots_seen"] >= 3 and bridge["station_faults"] >= 2 and bridge["corrupted_bytes"] > 0
