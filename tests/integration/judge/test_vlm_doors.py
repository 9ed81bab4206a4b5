"""The VLM judge through the product's own doors, as a user runs them: ``edge-inspector inspect`` and
``edge-inspector run`` as subprocesses, from a directory that is not the checkout, with the tiny AWQ
checkpoint. stdout carries results only (every line JSON), start-up problems exit 3 with the reason."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_inspector.outputs.store import EVIDENCE
from edge_inspector.synth.pcb import BoardDesign, make_board

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def cli(args: list[str], cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edge_inspector", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]  # a line that is not JSON fails here


@pytest.fixture
def boards(tmp_path):
    design = BoardDesign(seed=7)
    cv2.imwrite(str(tmp_path / "golden.png"), make_board(design, 0).image)
    cv2.imwrite(str(tmp_path / "board.png"), make_board(design, 5, defects=["short"]).image)
    return tmp_path


def test_inspect_with_the_awq_judge_from_another_directory_prints_json_only(boards, tiny_models):
    awq = tiny_models["qwen2_5_vl-awq"]
    (boards / "m.jsonl").write_text('{"id": "a", "image": "board.png"}\n{"id": "b", "image": "golden.png"}\n')
    r = cli(["inspect", "board.png", "--reference", "golden.png", "--set", "judge.kind=vlm",
             "--set", f"judge.model_dir={awq}", "--json"], cwd=boards)
    assert r.returncode == 0, r.stderr[-3000:]
    (result,) = json_lines(r.stdout)
    assert result["decided_by"] == "vlm" and result["id"] == "board.png"
    assert result["judge"]["valid_votes"] == 5 and result["judge"]["constrained"] is True
    assert 0.0 <= result["judge"]["p_logit"] <= 1.0 and len(result["votes"]) == 5
    assert "library_output" in r.stderr  # gptqmodel's banner went to the log, not to the results
    r = cli(["inspect", "--manifest", "m.jsonl", "--reference", "golden.png", "--set", "judge.kind=vlm",
             "--set", f"judge.model_dir={awq}", "--set", "judge.votes=2", "--json"], cwd=boards)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [x["id"] for x in json_lines(r.stdout)] == ["a", "b"]


def test_start_up_problems_exit_3_with_the_reason_and_no_traceback(boards, tiny_models):
    base = ["inspect", "board.png", "--reference", "golden.png", "--set", "judge.kind=vlm", "--json"]
    r = cli([*base, "--set", f"judge.model_dir={tiny_models['qwen2_5_vl-awq']}",
             "--set", "judge.recipe=missing.yaml"], cwd=boards)
    assert r.returncode == 3 and r.stdout == ""
    assert f"recipe {boards / 'missing.yaml'}: cannot read it" in r.stderr and "Traceback" not in r.stderr
    r = cli([*base, "--set", "judge.model_dir=no-such-model"], cwd=boards)
    assert r.returncode == 3 and r.stdout == "" and "Traceback" not in r.stderr
    assert f"VLM model directory {boards / 'no-such-model'}" in r.stderr


def test_the_demo_runs_with_the_awq_judge_from_another_directory(tmp_path, tiny_models):
    """configs/demo.yaml copied with its recipes, run from elsewhere: the default recipe is never looked
    for under the config's folder, the demo recipe's reference is the demo product's own board."""
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs/demo.yaml", tmp_path / "configs/demo.yaml")
    shutil.copytree(REPO / "configs/recipes", tmp_path / "configs/recipes")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = str(tmp_path / "configs/demo.yaml")
    r = cli(["demo", "prepare", "-c", cfg, "--good", "2"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    reference = tmp_path / "var/demo/product/reference.png"
    assert reference.is_file()
    vlm = ["--set", "judge.kind=vlm", "--set", f"judge.model_dir={tiny_models['qwen2_5_vl-awq']}",
           "--set", "judge.votes=3", "--set", "policy.deadline_ms=60000", "--set", "logging.format=json"]
    recipe = ["--set", f"judge.recipe={tmp_path / 'configs/recipes/pcb-demo.yaml'}"]
    r = cli(["run", "-c", cfg, *vlm, *recipe, "--max-parts", "3"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json_lines(r.stdout) == []  # the daemon's stdout carries nothing, not even a banner
    events = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    ready = [e for e in events if e["event"] == "vlm_judge_ready"]
    assert ready and ready[0]["recipe"] == str(tmp_path / "configs/recipes/pcb-demo.yaml")
    conn = sqlite3.connect(tmp_path / "var/demo/station/inspections.db")
    cols = ", ".join(EVIDENCE)
    rows = conn.execute(f"SELECT decided_by, votes, {cols} FROM inspections ORDER BY id").fetchall()
    conn.close()
    assert len(rows) == 3
    judged = [row for row in rows if row[0] == "vlm"]
    assert judged, rows  # the tiny model's random answers, but the judge's evidence in the row
    for row in judged:
        assert len(json.loads(row[1])) == 3 and row[2 + 2] + row[2 + 3] == 3  # valid + invalid votes
    r = cli(["status", "-c", cfg, "--json"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout)["last"]
    assert any(x["valid_votes"] is not None for x in last)  # status shows the votes
    # without the demo recipe the default is the package's recipe, never configs/configs/recipes/...
    r = cli(["run", "-c", cfg, *vlm, "--max-parts", "1"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    ready = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{") and "vlm_judge_ready" in x]
    assert ready[0]["recipe"] == str(REPO / "configs/recipes/pcb.yaml")
