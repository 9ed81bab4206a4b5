"""tools/soak.py: a short run under every fault of its schedule, no violation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.starters import MOSQUITTO

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not os.access(MOSQUITTO, os.X_OK), reason="mosquitto is missing (tools/install_system_deps.sh)")
def test_a_short_soak_loses_duplicates_and_wrongly_passes_nothing():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "soak.py"), "--parts", "200", "--cycles", "2"],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["violations"] == [] and got["parts"] >= 200 and got["published"] == got["parts"]
    table = got["table"]
    assert [table[f]["tried"] for f in ("sigkill", "broker", "sigterm", "end")] == [2, 2, 2, 1]
    assert got["runs"] == 5  # a start after each kill and each SIGTERM
    assert all(c.get(k, 0) == 0 for c in table.values() for k in ("lost", "duplicated", "wrongly passed"))
