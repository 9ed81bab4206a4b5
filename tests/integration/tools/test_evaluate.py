"""tools/evaluate.py on a labelled recording of synthetic boards, and MMAD's scoring."""

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


def test_mmad_scoring_as_mmad_does():
    rec = [
        # anomaly detection: normal 1/2 right, abnormal 2/2 right -> balanced 75
        {"image": "MVTec-AD/bottle/test/good/1.png", "question_type": "Anomaly Detection", "correct_answer": "B", "answer": "B"},
        {"image": "MVTec-AD/bottle/test/good/2.png", "question_type": "Anomaly Detection", "correct_answer": "B", "answer": "A"},
        {"image": "MVTec-AD/bottle/test/crack/1.png", "question_type": "Anomaly Detection", "correct_answer": "A", "answer": "A"},
        {"image": "MVTec-AD/bottle/test/crack/2.png", "question_type": "Anomaly Detection", "correct_answer": "A", "answer": "A"},
        {"image": "MVTec-AD/bottle/test/crack/1.png", "question_type": "Defect Type", "correct_answer": "C", "answer": "C"},
        {"image": "MVTec-AD/bottle/test/crack/1.png", "question_type": "Object Details", "correct_answer": "C", "answer": "D"},
        {"image": "MVTec-AD/bottle/test/crack/2.png", "question_type": "Object Structure", "correct_answer": "A", "answer": "A"},
        {"image": "MVTec-AD/bottle/test/crack/2.png", "question_type": "Defect Type", "correct_answer": "A", "answer": None},
    ]
    r = evaluate.score_mmad(rec)
    row = r["per_dataset"]["MVTec-AD"]
    assert row["Anomaly Detection"] == 75.0 and row["Defect Type"] == 100.0 and row["Object Analysis"] == 50.0
    assert row["Average"] == pytest.approx(75.0) and r["average"] == pytest.approx(75.0)
    assert r["invalid_answers"] == 1
    assert evaluate.parse_letter(" B. a scratch", {"A": "none", "B": "scratch"}) == "B"
    assert evaluate.parse_letter(" I think it is a scratch", {"A": "none", "B": "scratch"}) == "B"
    assert evaluate.parse_letter(" ???", {"A": "x", "B": "y"}) is None


def test_mmad_with_the_tiny_vlm(tmp_path, design):
    pytest.importorskip("transformers")
    from make_tiny_models import build_tokenizer, qwen2_5_vl_config, save_vlm

    tok = build_tokenizer()
    model_dir = save_vlm(qwen2_5_vl_config(tok), tok, 14, tmp_path / "qwen", teach=False)
    root = tmp_path / "mmad"
    (root / "PCB/board/test/good").mkdir(parents=True)
    (root / "PCB/board/test/short").mkdir(parents=True)
    cv2.imwrite(str(root / "PCB/board/test/good/0.png"), make_board(design, 1).image[:224, :224])
    cv2.imwrite(str(root / "PCB/board/test/short/0.png"), make_board(design, 2, defects=["short"]).image[:224, :224])
    q = lambda ans: [{"Question": "Is there any defect in the object?", "Answer": ans,  # noqa: E731
                      "Options": {"A": "Yes.", "B": "No."}, "type": "Anomaly Detection"}]
    data = {"PCB/board/test/good/0.png": {"conversation": q("B"), "random_templates": ["PCB/board/test/good/0.png"]},
            "PCB/board/test/short/0.png": {"conversation": q("A"), "random_templates": ["PCB/board/test/good/0.png"]}}
    (root / "mmad.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    rc = evaluate.main(["--mmad", str(root / "mmad.json"), "--model-dir", str(model_dir), "--device", "cpu",
                        "--votes", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["answers"] == 2 and len(report["records"]) == 2
    assert all(len(r["raw"]) == 3 for r in report["records"])  # three sampled answers per question


def test_mmad_needs_a_model_dir(tmp_path, capsys):
    assert evaluate.main(["--mmad", str(tmp_path / "mmad.json"), "--out", str(tmp_path)]) == 1
    assert "--model-dir" in capsys.readouterr().err
