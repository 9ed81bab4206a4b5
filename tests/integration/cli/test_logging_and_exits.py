"""What a user sees at the edges: stdout carries results only, every log line goes through
structlog (with journald's priority under systemd), exit codes that mean something."""

import json
import os
import sqlite3
import subprocess
import sys

import cv2

from edge_inspector.synth.pcb import make_board

# inspect, with a judge that prints (as gptqmodel's logbar does) and a library that logs through the
# standard library (as pymodbus and transformers do)
NOISY = """
import logging, sys
from edge_inspector.judge.anomaly import AnomalyJudge
real = AnomalyJudge.judge
def judge(self, frame, regions, deadline):
    print("Torch        : 2.13.0+cpu")
    logging.getLogger("pymodbus.logging").warning("Modbus says %s", "hi")
    logging.getLogger("transformers.modeling_utils").info("only at debug level")
    return real(self, frame, regions, deadline)
AnomalyJudge.judge = judge
from edge_inspector.cli import main
sys.exit(main())
"""


def images(tmp_path, design):
    cv2.imwrite(str(tmp_path / "ref.png"), make_board(design, 0).image)
    cv2.imwrite(str(tmp_path / "bad.png"), make_board(design, 77, defects=["short"]).image)
    return tmp_path / "bad.png", tmp_path / "ref.png"


def test_stdout_carries_the_results_only_and_library_logs_are_structlog_events(tmp_path, design):
    bad, ref = images(tmp_path, design)
    r = subprocess.run([sys.executable, "-c", NOISY, "inspect", str(bad), "--reference", str(ref), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()  # one JSON result, nothing else
    assert json.loads(line)["decision"] == "REJECT"
    events = [json.loads(x) for x in r.stderr.splitlines()]  # every line is a JSON event
    printed = [e for e in events if e["event"] == "library_output"]
    assert printed and printed[0]["line"] == "Torch        : 2.13.0+cpu" and printed[0]["level"] == "info"
    modbus = [e for e in events if e.get("logger") == "pymodbus.logging"]
    assert modbus == [{**modbus[0], "event": "Modbus says hi", "level": "warning"}] and "timestamp" in modbus[0]
    assert not any("only at debug level" in e["event"] for e in events)  # libraries: warning and up


def test_under_systemd_each_line_carries_its_journald_priority(tmp_path, design):
    bad, ref = images(tmp_path, design)
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        st = os.fstat(f.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        r = subprocess.run([sys.executable, "-c", NOISY, "inspect", str(bad), "--reference", str(ref),
                            "--json"], stdout=subprocess.PIPE, stderr=f, text=True, timeout=120, env=env)
    assert r.returncode == 0
    lines = err.read_text().splitlines()
    assert lines and all(x[:3] in ("<6>", "<4>", "<3>", "<7>", "<2>") for x in lines)
    by_event = {json.loads(x[3:])["event"]: x[:3] for x in lines}
    assert by_event["Modbus says hi"] == "<4>" and by_event["library_output"] == "<6>"
    plain = subprocess.run([sys.executable, "-c", NOISY, "inspect", str(bad), "--reference", str(ref), "--json"],
                           capture_output=True, text=True, timeout=120)  # not the journal: no prefix
    assert all(x.startswith("{") for x in plain.stderr.splitlines())


def test_a_database_from_a_newer_program_exits_3_with_the_reason(station_config):
    from edge_inspector.config import load_config

    cfg_path = station_config()
    db = load_config(cfg_path).db_path
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    r = subprocess.run([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg_path), "--max-parts", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert "schema is version 99, newer than this program's" in r.stderr and "Traceback" not in r.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 99  # untouched
    conn.close()


def test_inspect_builds_the_stages_the_daemon_builds(station_config):
    import argparse

    from edge_inspector.cli.inspect import OfflineInspector

    args = argparse.Namespace(config=str(station_config()), overrides=["pipeline.judge_grace_ms=321"])
    engine = OfflineInspector(args, has_reference=True)
    try:
        assert engine.inspector.judge.grace_s == 0.321  # inspect used to drop judge_grace_ms
    finally:
        engine.close()
