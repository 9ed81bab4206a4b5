"""tools/evaluate.py on a labelled recording of synthetic boards; its --mmad goes to tools/mmad.py."""

import json
import sys
from pathlib import Path

import cv2
import pytest

from edge_inspector.synth.pcb import make_board

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

import evaluate  # noqa: E402


@pytest.fixture
def recording(tmp_path, design):
    lines = []
    for seed in range(1, 9):
        board = make_board(design, 900 + seed, defects=(seed % 3 + 1) if seed % 2 == 0 else 0)
        cv2.imwrite(str(tmp_path / f"b{seed}.png"), board.image)
        item = {"id": f"b{seed}", "image": f"b{seed}.png",
                "label": "defective" if board.defective else "good"}
        if board.defective and seed != 4:
            item["boxes"] = [list(d.box) for d in board.defects]
        if seed == 4:  # the same regions as a polygon
            item["polygons"] = [[[d.box[0], d.box[1]], [d.box[2], d.box[1]], [d.box[2], d.box[3]],
                                 [d.box[0], d.box[3]]] for d in board.defects]
        lines.append(item)
    lines.append({"id": "mislabelled", "image": "b1.png", "label": "defective", "boxes": [[5, 5, 40, 40]]})
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_a_labelled_recording(recording, station_config, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = evaluate.main(["--manifest", str(recording), "--config", str(station_config()), "--out", str(out),
                        "--no-progress"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parts"] == 9 and report["good"] == 4 and report["defective"] == 5
    assert report["overkill_rate"] == 0.0 and report["miss_rate"] == pytest.approx(0.2)  # the mislabelled one
    assert report["accuracy"] == pytest.approx(8 / 9, abs=1e-4)
    assert report["box_recall"] >= 0.9 and report["box_precision"] >= 0.5
    assert report["cascade_skip_rate"] == 1.0  # the anomaly judge decides every part from the regions
    assert report["worst_misses"] == ["mislabelled"] and report["worst_false_alarms"] == []
    assert cv2.imread(report["grid"]).shape[2] == 3
    printed = capsys.readouterr().out
    assert "box_recall" in printed and "overkill_rate" in printed


def test_scores_and_matching():
    assert evaluate.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    items = [{"label": "good"}, {"label": "defective", "boxes": [[0, 0, 10, 10]]}, {"label": "weird"}]
    results = [{"action": "PASS", "decision": "PASS", "decided_by": "regions", "regions": []},
               {"action": "REJECT", "decision": "REJECT", "decided_by": "vlm",
                "regions": [{"box": [1, 1, 10, 10]}, {"box": [50, 50, 60, 60]}]},
               {"action": "REJECT", "decision": "NO-READ", "decided_by": None, "regions": []}]
    r = evaluate.score_parts(items, results)
    assert r["parts"] == 2 and r["accuracy"] == 1.0 and r["box_recall"] == 1.0 and r["box_precision"] == 0.5
    assert r["cascade_skip_rate"] == 0.5


def test_mmad_is_handed_to_tools_mmad(tmp_path, design, monkeypatch):
    """One implementation: evaluate.py --mmad runs tools/mmad.py with the same command line."""
    import mmad

    seen = []
    monkeypatch.setattr(mmad, "main", lambda argv: seen.append(argv) or 7)
    argv = ["--mmad", str(tmp_path / "mmad.json"), "--model-dir", str(tmp_path), "--shots", "1"]
    assert evaluate.main(argv) == 7 and seen == [argv]
    assert not hasattr(evaluate, "score_mmad") and not hasattr(evaluate, "run_mmad")


def test_mmad_errors_come_from_tools_mmad(tmp_path, capsys):
    assert evaluate.main(["--mmad", str(tmp_path / "mmad.json"), "--out", str(tmp_path)]) == 1
    assert "--model-dir" in capsys.readouterr().err
