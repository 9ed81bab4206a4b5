"""tools/mmad.py: MMAD's scoring on a hand-built case with known answers, its reading of replies, the
prompt's layout, and a small MMAD-format set made offline (synthetic boards) through the tiny VLM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.envelope import Box
from edge_inspector.synth.pcb import make_board

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

import mmad  # noqa: E402

ALL_TYPES = ["Anomaly Detection", "Defect Classification", "Defect Localization", "Defect Description",
             "Defect Analysis", "Object Classification", "Object Structure", "Object Details"]


def rec(image: str, qtype: str, correct: str, answer: str | None) -> dict:
    return {"image": image, "question_type": qtype, "correct_answer": correct, "gpt_answer": answer}


def test_scoring_a_hand_built_case():
    good, bad = "DS-MVTec/bottle/image/good/0.png", "DS-MVTec/bottle/image/broken/0.png"
    records = [
        # anomaly detection: normal 1 of 2, anomalous 2 of 2 -> (50 + 100) / 2 = 75
        rec(good, "Anomaly Detection", "B", "B"), rec(good.replace("0.", "1."), "Anomaly Detection", "B", "A"),
        rec(bad, "Anomaly Detection", "A", "A"), rec(bad.replace("0.", "1."), "Anomaly Detection", "A", "A"),
        rec(bad, "Defect Classification", "C", "C"), rec(bad, "Defect Classification", "C", "D"),  # 50
        rec(bad, "Defect Localization", "A", "A"),  # 100
        rec(bad, "Defect Description", "B", "A"),  # 0
        rec(bad, "Defect Analysis", "D", "D"),  # 100
        rec(bad, "Object Classification", "A", "A"),  # 100
        rec(bad, "Object Structure", "A", "A"), rec(bad, "Object Details", "B", "C"),  # Object Analysis 50
        rec(bad, "Defect Description", "B", None),  # named no option: left out, counted
        # a second data set with only two types; one unparsed answer
        rec("VisA/pcb1/test/good/0.png", "Anomaly Detection", "B", "B"),  # normal 100, no anomalous: 0 -> 50
        rec("VisA/pcb1/test/bad/0.png", "Object Classification", "A", "B"),  # 0
        rec("VisA/pcb1/test/bad/0.png", "Object Classification", "A", "?"),
    ]
    r = mmad.score(records)
    mv, visa, avg = r["table"]["DS-MVTec"], r["table"]["VisA"], r["table"]["Average"]
    assert r["types"] == list(mmad.TYPES)  # Object Structure / Details folded into Object Analysis
    assert [mv[t] for t in mmad.TYPES] == [75.0, 50.0, 100.0, 0.0, 100.0, 100.0, 50.0]
    assert mv["Average"] == pytest.approx(475 / 7)
    assert visa["Anomaly Detection"] == 50.0 and visa["Object Classification"] == 0.0
    assert visa["Defect Classification"] is None and visa["Average"] == 25.0  # a missing type stays out
    assert avg["Anomaly Detection"] == pytest.approx(62.5) and avg["Defect Classification"] == 50.0
    assert avg["Average"] == pytest.approx((475 / 7 + 25) / 2)
    assert r["answers"] == len(records) == 16 and r["left_out"] == 2
    assert r["left_out_by_type"] == {"DS-MVTec/Defect Description": 1, "VisA/Object Classification": 1}
    assert r["detection_accuracy"]["DS-MVTec"] == {"normal": 50.0, "abnormal": 100.0}
    text = mmad.format_table(r)
    for name in [*mmad.TYPES, "Average", "DS-MVTec", "VisA"]:
        assert name in text
    assert "left out (no option named): 2" in text
    assert text.splitlines()[2].split()[1:3] == ["50.0", "-"]  # VisA: Anomaly Detection, Defect Classification


def test_replies_are_read_as_mmad_reads_them():
    options = {"A": "Yes.", "B": "No."}
    assert mmad.parse_choice("B", options) == ("B", "letter")
    assert mmad.parse_choice("A crack: I would say B.", options) == ("B", "letter")  # the last letter
    assert mmad.parse_choice("Answer: C. scratch", {"A": "x", "C": "scratch"}) == ("C", "letter")
    assert mmad.parse_choice("no, it is fine", options) == ("B", "fuzzy")  # the closest option's text
    assert mmad.parse_choice("no, it is fine", options, fuzzy=False) == (None, "none")
    assert mmad.parse_choice("", {}) == (None, "none")
    assert mmad.vote(["A", "B", " B", "???"], options, fuzzy=False) == ("B", ["letter"] * 3 + ["none"])
    assert mmad.vote(["x"], {}, fuzzy=False) == (None, ["none"])


def test_the_prompt_layout():
    from edge_inspector.judge.vlm.prompt import ImagePart

    q = {"Question": "Is there any defect?", "Answer": "A", "Options": {"A": "Yes.", "B": "No."},
         "type": "Anomaly Detection"}
    img, tpl = np.zeros((40, 40), np.uint8), np.full((40, 40), 9, np.uint8)
    p = mmad.build_prompt(q, img, [tpl], knowledge="Bottles are round.")
    assert "industrial inspector" in p.prefix[0] and "Bottles are round." in p.prefix[1]
    texts = [s for s in p.prefix if isinstance(s, str)]
    roles = [s.role for s in p.prefix if isinstance(s, ImagePart)]
    assert roles == ["reference", "frame"] and texts[3:6] == ["Picture 1: ", "Following is the query image: ",
                                                              "Picture 2: "]
    assert len(p.suffix) == 1  # only the question changes between an image's questions: the rest is cached
    assert p.suffix[0].startswith("Question: Is there any defect? \nA. Yes.\nB. No.\n")
    assert p.suffix[0].endswith("<|im_start|>assistant\n") and p.answer_prefix == ""
    assert set(p.form.heads) == {"A", " A", "B", " B"} and not p.form.tail
    assert mmad.build_prompt(q, img, cot=True).form is None  # reasoning is free text
    box = Box(5, 5, 20, 20, 3.0)
    drawn = mmad.build_prompt(q, img, agent=((box,), (tpl,)), agent_view="boxes")
    frame = next(s for s in drawn.prefix if isinstance(s, ImagePart))
    assert frame.image.shape == (40, 40, 3) and tuple(frame.image[5, 10]) == (0, 0, 255)  # the red box
    assert mmad.AGENT_BOXES in drawn.prefix
    crops = mmad.build_prompt(q, img, agent=((box,), (tpl,)), agent_view="crops")
    assert [s.role for s in crops.prefix if isinstance(s, ImagePart)] == ["frame", "crop"]
    assert "Picture 2: " in crops.prefix


def test_domain_knowledge_lookup():
    dk = {"MVTec": {"bottle": {"good": "round", "broken": "cracked"}}, "VisA": {"pcb1": {"good": "green"}}}
    assert mmad.knowledge_for(dk, "DS-MVTec/bottle/image/good/0.png") == "round\ncracked"
    assert mmad.knowledge_for(dk, "VisA/pcb1/test/good/0.png") == "green"
    assert mmad.knowledge_for(dk, "GoodsAD/can/x.png") is None and mmad.knowledge_for(None, "a/b") is None


# -- a small MMAD-format set through the tiny VLM ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    pytest.importorskip("transformers")
    from make_tiny_models import build_tokenizer, qwen2_5_vl_config, save_vlm

    tok = build_tokenizer()
    return save_vlm(qwen2_5_vl_config(tok), tok, 14, tmp_path_factory.mktemp("qwen") / "qwen", teach=False)


@pytest.fixture(scope="module")
def mmad_set(tmp_path_factory):
    """Two data sets, a good and a defective board each, every question type asked of each image."""
    from edge_inspector.synth.pcb import BoardDesign

    root = tmp_path_factory.mktemp("mmad")
    data, design = {}, BoardDesign(seed=3, size=(160, 160))
    for ds in ("DS-MVTec", "VisA"):
        for kind in ("good", "short"):
            rel = f"{ds}/board/test/{kind}/0.png"
            tpl = f"{ds}/board/train/good/{kind}.png"
            template = make_board(design, 5, defects=0).image
            query = template.copy()
            if kind == "short":  # a copper blob where the template has none
                cv2.circle(query, (60, 70), 9, (255, 255, 255) if query.ndim == 3 else 255, -1)
            for path, img in ((rel, query), (tpl, template)):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / path), img)
            conv = [{"Question": f"{t}?", "Answer": "A" if kind == "short" else "B", "type": t,
                     "Options": {"A": "Yes.", "B": "No.", "C": "Maybe."}} for t in ALL_TYPES]
            data[rel] = {"conversation": conv, "random_templates": [tpl], "similar_templates": [tpl]}
    (root / "mmad.json").write_text(json.dumps(data))
    (root / "domain_knowledge.json").write_text(json.dumps({"MVTec": {"board": {"good": "a bare PCB"}}}))
    return root


def run(tiny_vlm, mmad_set, out, *extra) -> tuple[int, dict, list]:
    rc = mmad.main(["--mmad", str(mmad_set / "mmad.json"), "--model-dir", str(tiny_vlm), "--device", "cpu",
                    "--max-pixels", str(160 * 160), "--out", str(out), "--no-progress", *extra])
    return rc, json.loads((out / "report.json").read_text()), json.loads((out / "answers.json").read_text())


def test_the_tiny_vlm_answers_every_question_and_the_table_shows_every_type(tiny_vlm, mmad_set, tmp_path, capsys):
    rc, report, records = run(tiny_vlm, mmad_set, tmp_path / "a", "--domain-knowledge",
                              str(mmad_set / "domain_knowledge.json"), "--votes", "3", "--temperature", "0.8")
    assert rc == 0 and len(records) == 4 * len(ALL_TYPES) == report["answers"]
    assert report["types"] == list(mmad.TYPES) and set(report["table"]) == {"DS-MVTec", "VisA", "Average"}
    assert report["parsed"] == {"letter": 3 * len(records)}  # constrained: every reply is one letter
    assert report["left_out"] == 0 and all(r["gpt_answer"] in "ABC" for r in records)
    assert all(len(r["raw"]) == 3 and all(x.strip() in "ABC" for x in r["raw"]) for r in records)
    printed = capsys.readouterr().out
    assert all(t in printed for t in mmad.TYPES) and "DS-MVTec" in printed and "1-shot random" in printed
    assert mmad.score(records)["table"] == report["table"]  # the answers file scores to the same table


def test_free_strict_replies_that_name_no_option_are_counted(tiny_vlm, mmad_set, tmp_path):
    rc, report, records = run(tiny_vlm, mmad_set, tmp_path / "b", "--free", "--strict", "--max-new-tokens", "6")
    assert rc == 0
    unread = sum(r["gpt_answer"] is None for r in records)
    assert report["left_out"] == unread == report["parsed"].get("none", 0)
    assert unread > 0  # the untrained tiny model rambles: MMAD's table must not hide that


def test_the_regions_stage_as_the_agent(tiny_vlm, mmad_set, tmp_path):
    rc, report, records = run(tiny_vlm, mmad_set, tmp_path / "c", "--agent", "variation", "--agent-view", "crops",
                              "--similar-template", "--limit", "2")
    assert rc == 0 and report["settings"]["templates"] == "similar"
    assert report["agent_failures"] == 0, [r["agent_error"] for r in records]
    boxes = {r["image"].split("/")[3]: r["agent_boxes"] for r in records}
    assert boxes["short"] >= 1  # the defect differs from the template


def test_compare_and_rescore(tiny_vlm, mmad_set, tmp_path, capsys):
    run(tiny_vlm, mmad_set, tmp_path / "d")
    run(tiny_vlm, mmad_set, tmp_path / "e", "--cot", "--max-new-tokens", "8")
    capsys.readouterr()
    assert mmad.main(["--compare", str(tmp_path / "d/report.json"), str(tmp_path / "e/report.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "Anomaly Detection" in lines[0] and "cot" in lines[2] and "cot" not in lines[1]
    assert mmad.main(["--score", str(tmp_path / "e/answers.json"), "--strict", "--out", str(tmp_path / "f")]) == 0
    strict = json.loads((tmp_path / "f/report.json").read_text())
    assert strict["answers"] == 4 * len(ALL_TYPES) and "Average" in strict["table"]


def test_errors(tmp_path, capsys):
    assert mmad.main(["--mmad", str(tmp_path / "mmad.json"), "--out", str(tmp_path)]) == 1
    assert "--model-dir" in capsys.readouterr().err
    assert mmad.main(["--score", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 1
