"""The data set is what the VLM judge was shown: a station judged by the tiny Qwen2.5-VL, a person's
labels, ``dataset export``; each exported conversation equals the prompt the judge built for that part
(captured at the engine), image by image, and its answer is one the constrained decoder could write."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.imageio import load_image
from edge_inspector.judge.vlm.parse import parse_answer
from edge_inspector.judge.vlm.prompt import ANSWER_PREFIX, ImagePart, chat_messages

pytestmark = pytest.mark.slow


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edge_inspector", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_exported_conversations_are_the_prompts_the_judge_sent(station_config, tiny_models, pcb_recipe,
                                                                tmp_path):
    cfg = station_config(judge={"kind": "vlm", "model_dir": str(tiny_models["qwen2_5_vl"]), "votes": 2,
                                "recipe": str(pcb_recipe), "device": "cpu", "seed": 3,
                                "frame_max_pixels": 256 * 256, "reference_max_pixels": 256 * 256,
                                "crop_max_pixels": 64 * 64, "max_regions": 2, "cascade": {"enabled": False}},
                         policy={"deadline_ms": 120000, "reject_threshold": 0.001},  # every part saved
                         capture={"defect_rate": 0.5},
                         images={"keep": True})
    station = Station.build(load_config(cfg))
    vlm = station.inspector.judge.judge
    sent: dict[str, object] = {}
    current: list[str] = []
    judge, run = vlm.judge, vlm.engine.run

    def judging(frame, regions, deadline):
        current[:] = [frame.part_id]
        return judge(frame, regions, deadline)

    def running(prompt, votes, guard):
        sent[current[0]] = prompt
        return run(prompt, votes, guard)

    vlm.judge, vlm.engine.run = judging, running
    assert station.run(max_parts=4, install_signals=False) == 0
    conn_rows = json.loads(cli("review", "list", "--config", cfg, "--json", "--limit", "0").stdout)["queue"]
    with_image = [r for r in conn_rows if r["image_path"] and r["part_id"] in sent]
    assert len(with_image) >= 2, [(r["outcome"], r["reason"]) for r in conn_rows]
    good, bad = with_image[0]["part_id"], with_image[1]["part_id"]
    assert cli("review", "label", good, "--config", cfg, "--label", "good").returncode == 0
    r = cli("review", "label", bad, "--config", cfg, "--label", "defective", "--type", "short")
    assert r.returncode == 0, r.stderr
    r = cli("review", "label", bad, "--config", cfg, "--label", "defective", "--type", "scratch")
    assert r.returncode == 2 and "scratch" in r.stderr  # the judge's recipe knows no such type

    out = tmp_path / "ds"
    r = cli("dataset", "export", "--config", cfg, "--out", out, "--val-share", "0", "--json")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest["prompt_images"]["max_regions"] == 2 and manifest["counts"]["train"]["examples"] == 2
    assert manifest["counts"]["judged_with_another_recipe"] == 0  # the rows' recipe_version is this one
    lines = {x["id"]: x for x in map(json.loads, (out / "train.jsonl").read_text().splitlines())}
    roles = set()
    for part, label in ((good, "good"), (bad, "defective")):
        prompt = sent[part]
        want = chat_messages(prompt.prefix + prompt.suffix, lambda p: {"type": "image", "image": p})
        got = lines[part]["messages"]
        assert len(got) == len(want) == 3
        for g, w in zip(got[:-1], want[:-1], strict=True):
            assert g["role"] == w["role"] and len(g["content"]) == len(w["content"])
            for gi, wi in zip(g["content"], w["content"], strict=True):
                if wi["type"] == "text":
                    assert gi == wi
                else:
                    assert isinstance(wi["image"], ImagePart) and gi["type"] == "image"
                    assert np.array_equal(load_image(out / gi["image"]), wi["image"].image), wi["image"].role
                    assert gi["role"] == wi["image"].role  # the trainer shows it at this role's size limit
                    roles.add(wi["image"].role)
        assert want[-1]["content"] == [{"type": "text", "text": ANSWER_PREFIX}]
        answer = got[-1]["content"][0]["text"]
        assert answer[len(ANSWER_PREFIX):].startswith(prompt.form.heads)  # the constrained form
        vote = parse_answer(answer, vlm.recipes.recipe.defect_names, prompt.n_regions)
        assert vote.defective == (label == "defective")
        assert vote.defect_type == ("short" if label == "defective" else None)
    assert {"reference", "frame"} <= roles
