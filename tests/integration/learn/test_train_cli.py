"""``edge-inspector train`` and ``train merge`` as a user runs them: results on stdout, the per-step
loss on stderr, a resume that continues the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edge_inspector", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=REPO)


def test_train_resume_and_merge_from_the_command_line(tiny_qwen, dataset_dir, tmp_path):
    run_dir = tmp_path / "run"
    first = _cli("train", "--dataset", str(dataset_dir), "--base", str(tiny_qwen), "--out", str(run_dir),
                 "--steps", "2", "--rank", "4", "--lr", "3e-3", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads(first.stdout)  # stdout holds the result only (no gptqmodel banner)
    assert result["steps"] == 2 and result["adapter"] == str(run_dir / "adapter")
    assert first.stderr.count("train_step") == 2 and "train_done" in first.stderr

    again = _cli("train", "--dataset", str(dataset_dir), "--base", str(tiny_qwen), "--out", str(run_dir))
    assert again.returncode == 2 and "already holds a run: --resume" in again.stderr

    more = _cli("train", "--out", str(run_dir), "--resume", "--steps", "3", "--json")
    assert more.returncode == 0, more.stderr[-2000:]
    assert json.loads(more.stdout)["steps"] == 3 and more.stderr.count("train_step") == 1
    run = json.loads((run_dir / "run.json").read_text())
    assert run["loss"][:2] == pytest.approx([result["first_loss"], result["last_loss"]])
    assert run["settings"]["lora"]["rank"] == 4 and run["settings"]["lr"] == 3e-3 and run["finished"]

    merged = _cli("train", "merge", str(run_dir), "--json")
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert json.loads(merged.stdout)["merged"] == str(run_dir / "merged")
    assert (run_dir / "merged/model.safetensors").is_file() and (run_dir / "merged/tokenizer.json").is_file()
