"""tools/stress_lifecycle.py: a short run (the 200-cycle run is in the report of issue 12)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason="mosquitto is missing (tools/install_system_deps.sh)")
def test_a_short_stress_run_stops_cleanly_every_time_with_everything_busy():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "stress_lifecycle.py"), "--cycles", "4",
                        "--jobs", "2", "--seed", "3", "--backlog", "500"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["starts"] == got["clean_stops"] == 4 and got["crashes"] == 0
    assert got["rows_pruned"] > 0 and got["commands"] > 0 and got["mqtt_connects"] >= 4  # all busy
