"""Model versions with real (tiny) VLM checkpoints through the judge's own loading path: a candidate
evaluated against the current version on a held-out recording, promotion refused when it misses a
defective part the current one caught or raises overkill, and a running daemon (a real process)
switched by promote and rollback between two parts, its rows naming the version that judged them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_inspector.cli import main
from edge_inspector.config import load_config
from edge_inspector.learn.models import Registry
from edge_inspector.service.config import control_socket_path
from edge_inspector.service.control import ControlError, request
from edge_inspector.synth.pcb import make_board
from tests.helpers import wait_until
from tests.integration.judge.model_runs import make_run
from tests.integration.judge.vlm_parts import SMALL

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture
def runs(tmp_path, tiny_models):
    base = tiny_models["qwen2_5_vl"]
    return {name: make_run(tmp_path / "runs", name, base, towards)
            for name, towards in (("rejects", "yes"), ("rejects-too", "yes"), ("passes", "no"))}


@pytest.fixture
def config(tmp_path, station_config, pcb_recipe):
    def make(**sections):
        return station_config(
            models={"dir": str(tmp_path / "models")},
            judge={"kind": "vlm", "model_version": "current", "recipe": str(pcb_recipe), "votes": 2,
                   "seed": 0, "device": "cpu", "cascade": {"enabled": False}, **SMALL},
            policy={"deadline_ms": 120000}, **sections)
    return make


@pytest.fixture
def recording(tmp_path, design):
    """A held-out labelled recording of the product: three good boards, three defective ones."""
    rec = tmp_path / "recording"
    rec.mkdir()
    lines = []
    for i in range(6):
        board = make_board(design, 5000 + i, defects=0 if i % 2 == 0 else [["short", "open", "spur"][i // 2]])
        cv2.imwrite(str(rec / f"b{i}.png"), board.image)
        lines.append({"id": f"b{i}", "image": f"b{i}.png", "label": "defective" if board.defective else "good",
                      "boxes": [list(d.box) for d in board.defects]})
    (rec / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return rec


def cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_evaluate_then_promote_refused_for_a_miss_and_for_overkill(runs, config, recording, capsys):
    cfg = str(config())
    for run in ("rejects", "passes", "rejects-too"):
        assert cli(capsys, "model", "import", str(runs[run]), "-c", cfg)[0] == 0  # v1, v2, v3
    assert cli(capsys, "model", "promote", "v1", "-c", cfg)[0] == 0  # the first version: nothing to compare
    rc, out, err = cli(capsys, "model", "evaluate", "v2", "--recording", str(recording), "-c", cfg, "--json")
    assert rc == 0, err[-3000:]
    report = json.loads(out)
    defective = ["b1", "b3", "b5"]
    assert report["against"] == "v1" and report["missed_caught_by_current"] == defective
    parts = {p["id"]: p for p in report["per_part"]}
    assert all(p["current"]["decided_by"] == p["candidate"]["decided_by"] == "vlm" for p in parts.values())
    assert all(p["current"]["action"] == "REJECT" for p in parts.values())  # v1 rejects every board
    assert [i for i, p in parts.items() if p["candidate"]["action"] == "REJECT"] == []
    assert report["current"]["overkill_rate"] == 1.0 and report["candidate"]["miss_rate"] == 1.0
    reg = Registry(load_config(cfg).models_dir)
    assert reg.get("v2").metrics["per_part"] == report["per_part"]  # stored in the candidate's manifest
    rc, _, err = cli(capsys, "model", "promote", "v2", "-c", cfg)
    assert rc == 1 and "v2 misses 3 defective parts that v1 caught: b1, b3, b5" in err
    assert reg.current().id == "v1"

    # v3 behaves as v1 does: nothing missed, no more overkill: promoted
    rc, out, err = cli(capsys, "model", "evaluate", "v3", "--recording", str(recording), "-c", cfg)
    assert rc == 0 and "promotion: allowed" in out, err[-3000:]
    assert cli(capsys, "model", "promote", "v3", "-c", cfg)[0] == 0 and reg.current().id == "v3"

    # the other way round: the candidate that rejects everything against one that passes everything
    assert cli(capsys, "model", "import", str(runs["passes"]), "--name", "lenient", "-c", cfg)[0] == 0
    assert cli(capsys, "model", "promote", "lenient", "--force", "-c", cfg)[0] == 0
    assert cli(capsys, "model", "evaluate", "v1", "--recording", str(recording), "-c", cfg)[0] == 0
    rc, _, err = cli(capsys, "model", "promote", "v1", "-c", cfg)
    assert rc == 1 and "v1 raises overkill from 0.0% (lenient) to 100.0%: +100.0 points" in err
    assert "misses" not in err


# --- a running station ------------------------------------------------------------------------


def rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, model_version, decided_by, model_hash FROM inspections ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def runs_of(seq: list) -> list:
    """The sequence with repeats collapsed: [v1, v1, v2, v2, v1] -> [v1, v2, v1]."""
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


def test_promote_and_rollback_switch_the_running_daemon_between_two_parts(runs, config, recording, capsys,
                                                                         tmp_path):
    path = config(capture={"kind": "demo", "design_seed": 7, "seed": 5000, "defect_rate": 0.4,
                           "interval_ms": 150})
    cfg_obj = load_config(path, resolve_model=False)
    cfg = str(path)
    for run in ("rejects", "rejects-too"):
        assert cli(capsys, "model", "import", str(runs[run]), "-c", cfg)[0] == 0
    assert cli(capsys, "model", "promote", "v1", "-c", cfg)[0] == 0
    rc, _, err = cli(capsys, "model", "evaluate", "v2", "--recording", str(recording), "-c", cfg)
    assert rc == 0, err[-3000:]

    log = (tmp_path / "daemon.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", cfg, "--set", "logging.level=info",
                             "--set", "logging.format=json"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=tmp_path)
    sock, db = control_socket_path(cfg_obj), cfg_obj.db_path

    def status():
        try:
            return request(sock, "status")["status"]
        except ControlError:
            return None

    try:
        assert wait_until(lambda: proc.poll() is None and (status() or {}).get("model_version") == "v1", 300, 0.2), \
            (tmp_path / "daemon.log").read_text()[-3000:]
        assert wait_until(lambda: len(rows(db)) >= 2, 120, 0.1)
        rc, out, err = cli(capsys, "model", "promote", "v2", "-c", cfg)
        assert rc == 0, err[-3000:]
        assert "the station reloaded in " in out and "s: the next parts are judged by v2" in out
        switched = len(rows(db))
        assert status()["model_version"] == "v2"
        assert wait_until(lambda: len(rows(db)) >= switched + 2, 120, 0.1)
        rc, out, err = cli(capsys, "model", "rollback", "-c", cfg)
        assert rc == 0 and "rollback: v1 is current (was v2); the station reloaded in " in out, err[-3000:]
        back = len(rows(db))
        assert wait_until(lambda: len(rows(db)) >= back + 2, 120, 0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    got = rows(db)
    assert all(r[2] == "vlm" for r in got)  # the VLM judged every part (no cascade)
    # every part named by the version in force when it was judged: v1, then v2 from a part on, then v1
    assert runs_of([r[1] for r in got]) == ["v1", "v2", "v1"]
    assert [r[1] for r in got[switched:back]].count("v1") == 0  # after promote returned: v2 only
    assert all(r[1] == "v1" for r in got[back:])
    events = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()
              if line.startswith("{")]
    assert [e["why"] for e in events if e.get("event") == "reload_applied"] == ["control socket"] * 2
