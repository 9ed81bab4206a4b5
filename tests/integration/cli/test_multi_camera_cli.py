"""configs/multi-camera.yaml as a user runs it: prepare, run, status, from a copy outside the repo."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "edge_inspector", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_the_multi_camera_config_runs_two_demo_cameras_out_of_the_box(tmp_path):
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "multi-camera.yaml"
    shutil.copy(REPO / "configs/multi-camera.yaml", config)  # its ../var paths land under tmp_path
    r = cli("demo", "prepare", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("wrote ") == 2 and (tmp_path / "var/demo/product-bottom/reference.png").exists()
    r = cli("run", "--config", str(config), "--max-parts", "12", "--set", "api.enabled=false",
            "--set", "logging.format=json")
    assert r.returncode == 0, r.stderr[-2000:]
    db = tmp_path / "var/demo/multi/inspections.db"
    rows = sqlite3.connect(db).execute("SELECT camera, outcome FROM inspections").fetchall()
    assert len(rows) == 12 and {c for c, _ in rows} == {"top", "bottom"}
    assert all(o in ("PASS", "REJECT") for _, o in rows)
    r = cli("status", "--config", str(config), "--json")
    assert r.returncode == 0, r.stderr
    cams = json.loads(r.stdout)["totals"]["cameras"]
    assert set(cams) == {"top", "bottom"} and sum(c["parts"] for c in cams.values()) == 12
