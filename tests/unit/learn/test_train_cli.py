"""``edge-inspector train``'s options: what is required, what a resume takes from its run."""

from __future__ import annotations

import json

import pytest

from edge_inspector.cli import build_parser, main
from edge_inspector.cli.train import settings_from


def test_train_and_train_merge_parse():
    p = build_parser()
    a = p.parse_args(["train", "--dataset", "d", "--base", "b", "--out", "r", "--steps", "7", "--rank", "4"])
    assert a.func.__name__ == "cmd_train" and a.train_action is None
    s = settings_from(a, None)
    assert s.steps == 7 and s.lora.rank == 4 and s.lora.as_dict()["alpha"] == 8.0 and s.lora.vision is False
    m = p.parse_args(["train", "merge", "runs/x"])
    assert m.func.__name__ == "cmd_merge" and str(m.run_dir) == "runs/x"


def test_a_resume_takes_the_runs_settings_and_refuses_other_ones():
    p = build_parser()
    recorded = {"lr": 0.003, "batch": 4, "seed": 2, "max_pixels": 50176, "weight_decay": 0.0, "grad_clip": 1.0,
                "gradient_checkpointing": False, "lora": {"rank": 8, "alpha": 16.0, "dropout": 0.0, "vision": True}}
    a = p.parse_args(["train", "--out", "r", "--resume", "--steps", "30"])
    s = settings_from(a, recorded)
    assert s.recorded() == recorded and s.steps == 30


def test_missing_options_and_bad_values_are_errors(tmp_path, capsys):
    assert main(["train", "--dataset", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "--base is required" in capsys.readouterr().err
    assert main(["train", "--dataset", "d", "--base", "b", "--out", "r", "--lr", "-1"]) == 2
    assert "lr is out of range" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_a_missing_dataset_is_named(tmp_path, capsys):
    (tmp_path / "base").mkdir()
    rc = main(["train", "--dataset", str(tmp_path / "nope"), "--base", str(tmp_path / "base"),
               "--out", str(tmp_path / "r")])
    assert rc == 2 and "nope: not a directory" in capsys.readouterr().err
    (tmp_path / "run.json").write_text(json.dumps({"finished": False}))
    assert main(["train", "merge", str(tmp_path)]) == 2


@pytest.mark.parametrize("flag", ["--steps", "--batch", "--rank"])
def test_counts_below_one_are_refused(flag, capsys):
    assert main(["train", "--dataset", "d", "--base", "b", "--out", "r", flag, "0"]) == 2
    assert "out of range" in capsys.readouterr().err
