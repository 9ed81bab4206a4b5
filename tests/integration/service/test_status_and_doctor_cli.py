"""The status CLI as a technician sees it (in tmux, and captured), and the doctor's table."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_inspector.service.control import request

ROOT = Path(__file__).resolve().parents[3]


def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "edge_inspector", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture
def tmux(tmp_path):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (tools/install_system_deps.sh installs it)")
    sock = str(tmp_path / "tmux.sock")

    def run(*args):
        return subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)

    yield run
    run("kill-server")


def screen(tmux, want: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = tmux("capture-pane", "-p", "-t", "status").stdout
        if want in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{want!r} not on the screen:\n{text}")


def test_status_watch_in_tmux_live_paused_and_daemon_gone(station_config, daemon, tmux):
    cfg = station_config(capture={"interval_ms": 150})
    d = daemon(cfg)
    d.wait_ready()
    d.wait_decisions(3)
    # the pane's real size, not a COLUMNS/LINES the test runner's environment may carry
    cmd = f"env -u COLUMNS -u LINES {sys.executable} -m edge_inspector status --watch 0.3 -c {cfg}"
    r = tmux("new-session", "-d", "-s", "status", "-x", "150", "-y", "45", "-c", str(ROOT), cmd)
    assert r.returncode == 0, r.stderr
    text = screen(tmux, "refreshed every")
    assert "station test" in text and ("RUNNING" in text or "IDLE" in text)
    assert "camera   demo-cam  online" in text
    assert "judge anomaly" in text and "links    store ok" in text
    assert "reject rate" in text and "refreshed every 0.3 s" in text, text
    assert text.count("┃ time") + text.count("time ") >= 1
    parts_line = [line for line in text.splitlines() if line.startswith("parts ")][0]
    first = int(parts_line.split()[1])

    request(d.socket_path, "pause")
    text = screen(tmux, "PAUSED")
    assert "PAUSED: every trigger is a NO-READ (paused)" in text and "paused" in text
    # refreshed in place: one header on the screen, and the count has moved on
    assert text.count("edge-inspector  station test") == 1
    parts_line = [line for line in text.splitlines() if line.startswith("parts ")][0]
    assert int(parts_line.split()[1]) > first

    d.wait_decisions(10)  # what "last 10 decisions" below needs, however fast the parts came
    assert d.terminate() == 0
    import sqlite3

    rows = sqlite3.connect(d.cfg.db_path).execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
    text = screen(tmux, "daemon not running")
    # as many decisions as there are, up to 10: a quick run may have made fewer than 10
    assert "totals from the database" in text and f"last {min(10, rows)} decisions" in text, text


def test_status_without_the_daemon_falls_back_to_sqlite(station_config):
    cfg = station_config()
    assert cli("run", "--config", str(cfg), "--max-parts", "4").returncode == 0
    r = cli("status", "--config", str(cfg), "-n", "2")
    assert r.returncode == 0, r.stderr
    assert "daemon not running" in r.stdout and "parts 4" in r.stdout and "last 2 decisions" in r.stdout


def test_doctor_table_and_exit_code(station_config):
    cfg = station_config()
    assert cli("run", "--config", str(cfg), "--max-parts", "2").returncode == 0
    ok = cli("doctor", "--config", str(cfg))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for row in ("daemon", "camera", "reference images", "GPU", "serial port", "MQTT broker", "free disk",
                "database"):
        assert row in ok.stdout
    assert "integrity ok" in ok.stdout and "all checks passed" in ok.stdout

    bad = cli("doctor", "--config", str(cfg), "--set", "service.retention.min_free_mb=1e12",
              "--serial", "/dev/edge-inspector-no-such-bridge", "--broker", "127.0.0.1:9")
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    free = next(line for line in lines if line.startswith("│ free disk"))
    assert "FAIL" in free and "free space" in free
    assert any(line.startswith("│ serial port") and "FAIL" in line for line in lines)
    assert any(line.startswith("│ MQTT broker") and "FAIL" in line for line in lines)
    assert "3 failed: serial port, MQTT broker, free disk" in bad.stdout


BRIDGE = ROOT / "firmware_bridge" / "build"


@pytest.mark.skipif(not (BRIDGE / "bridge_sim").exists(), reason="firmware not built: make -C firmware_bridge all sim")
def test_doctor_handshakes_with_the_real_firmware_in_simavr(station_config):
    sim = subprocess.Popen([str(BRIDGE / "bridge_sim"), str(BRIDGE / "bridge.elf")], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = sim.stdout.readline().split()
        assert first[0] == "PTY"
        r = cli("doctor", "--config", str(station_config()), "--serial", first[1], "--json")
        import json

        rows = {x["check"]: x for x in json.loads(r.stdout)}
        assert rows["serial port"]["result"] == "PASS"
        assert rows["bridge handshake"]["result"] == "PASS", rows["bridge handshake"]
        assert "firmware" in rows["bridge handshake"]["detail"]
    finally:
        sim.kill()
        sim.wait(5)
