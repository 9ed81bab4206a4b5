"""The learning loop's first steps as a user runs them: a station inspects parts, a person works through
the review queue (``review list|label``), and ``dataset export`` writes what the judge would have been
shown, with the answer it should have given."""

from __future__ import annotations

import getpass
import hashlib
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.dataset.export import context_for, dataset_hash, split_of
from edge_inspector.imageio import load_image
from edge_inspector.judge.vlm.parse import parse_answer
from edge_inspector.judge.vlm.prompt import chat_messages, prompt_for

PARTS = 16


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edge_inspector", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def inspected(station_config):
    """A station that ran PARTS parts; what its regions stage handed the judge, per part."""
    path = station_config(capture={"defect_rate": 0.5})
    station = Station.build(load_config(path))
    seen = {}
    find = station.inspector.regions.find

    def recording(frame):
        regions = find(frame)
        seen[frame.part_id] = (frame.image.copy(), regions.boxes, regions.crops)
        return regions

    station.inspector.regions.find = recording
    assert station.run(max_parts=PARTS, install_signals=False) == 0
    return path, seen


def queue(cfg):
    r = cli("review", "list", "--config", cfg, "--json", "--limit", "0")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_review_then_export_the_judges_own_prompt(inspected, tmp_path):
    cfg, seen = inspected
    q = queue(cfg)
    whys = [r["why"] for r in q["queue"]]
    assert whys == sorted(whys, key=["no_read", "reject", "uncertain", "audit"].index)
    rejects = [r for r in q["queue"] if r["why"] == "reject"]
    assert len(rejects) >= 4, q["counts"]
    # a person's labels: two defects, a false alarm (with a note), and one part without a type
    first, second, false_alarm = rejects[0]["part_id"], rejects[1]["part_id"], rejects[2]["part_id"]
    for part, args in ((first, ["--label", "defective", "--type", "short"]),
                       (second, ["--label", "defective", "--type", "spurious_copper"]),
                       (false_alarm, ["--label", "good", "--note", "dust on the lens"])):
        r = cli("review", "label", part, "--config", cfg, *args, "--json")
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout)
        assert row["reviewer"] == getpass.getuser() and row["via"] == "cli" and row["created"] > 0
    r = cli("review", "label", "no-such-part", "--config", cfg, "--label", "good")
    assert r.returncode == 2 and "no-such-part" in r.stderr and "Traceback" not in r.stderr
    after = queue(cfg)
    assert {first, second, false_alarm}.isdisjoint(r["part_id"] for r in after["queue"])
    assert after["labelled"] == 3 and len(after["queue"]) == len(q["queue"]) - 3

    out = tmp_path / "ds"
    opts = ("--val-share", "0.5", "--synthetic", 6, "--json")
    r = cli("dataset", "export", "--config", cfg, "--out", out, *opts)
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "edge-inspector-dataset/1"

    # the manifest's hashes are those of the files, and it lists every file
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for rel, sha in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha
    assert manifest["dataset_hash"] == dataset_hash(manifest["files"])

    lines = {s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()]
             for s in ("train", "val")}
    ids = {s: [x["id"] for x in lines[s]] for s in lines}
    assert set(ids["train"]).isdisjoint(ids["val"])  # a part is never in both
    assert all(split_of(i, 0.5) == s for s in ids for i in ids[s])
    examples = {x["id"]: x for s in lines for x in lines[s]}
    assert manifest["counts"]["total"] == len(examples) == 3 + 6
    assert manifest["counts"]["train"]["examples"] == len(ids["train"])

    # each station example is what the judge would have been sent for that part
    ctx = context_for(load_config(cfg))
    names = ctx.recipe.defect_names
    expected_label = {first: ("defective", "short"), second: ("defective", "spurious_copper"),
                      false_alarm: ("good", None)}
    for part, (label, dtype) in expected_label.items():
        ex = examples[part]
        assert (ex["label"], ex["defect_type"]) == (label, dtype)
        frame, boxes, crops = seen[part]
        prompt = prompt_for(ctx.recipe, frame, crops, boxes, ctx.references, None, ctx.limits.max_regions)
        want = chat_messages(prompt.prefix + prompt.suffix, lambda p: {"type": "image", "image": p})
        got = ex["messages"]
        assert [m["role"] for m in got] == [m["role"] for m in want] == ["system", "user", "assistant"]
        for g, w in zip(got[:-1], want[:-1], strict=True):
            assert len(g["content"]) == len(w["content"])
            for gi, wi in zip(g["content"], w["content"], strict=True):
                assert gi["type"] == wi["type"]
                if gi["type"] == "text":
                    assert gi["text"] == wi["text"]
                else:  # the very pixels the judge would have been given
                    assert np.array_equal(load_image(out / gi["image"]), wi["image"].image)
                    assert gi["role"] == wi["image"].role  # the trainer shows it at this role's size limit
        answer = got[-1]["content"][0]["text"]
        assert answer.startswith(prompt.answer_prefix)
        vote = parse_answer(answer, names, prompt.n_regions)
        assert vote.defective == (label == "defective") and vote.defect_type == dtype
        if label == "good":
            assert answer.endswith("description: dust on the lens")
        else:
            assert dtype.replace("_", " ") in vote.description

    # the synthetic examples: N more, half defective, each description naming its type
    synthetic = [x for x in examples.values() if x["id"].startswith("synthetic-")]
    assert len(synthetic) == 6
    defective = [x for x in synthetic if x["label"] == "defective"]
    assert len(defective) == 3 and len({x["defect_type"] for x in defective}) == 3
    for x in synthetic:
        vote = parse_answer(x["messages"][-1]["content"][0]["text"], names, 4)
        assert vote.defective == (x["label"] == "defective")
        if vote.defective:
            assert x["defect_type"] in names and x["defect_type"].replace("_", " ") in vote.description
    counted = sum(manifest["counts"][s]["synthetic"] for s in ("train", "val"))
    assert counted == 6

    # an export is reproducible: the same store and options give the same data set
    again = tmp_path / "ds2"
    r = cli("dataset", "export", "--config", cfg, "--out", again, *opts)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dataset_hash"] == manifest["dataset_hash"]
    r = cli("dataset", "export", "--config", cfg, "--out", again)
    assert r.returncode == 1 and "not empty" in r.stderr


def test_a_label_without_a_stored_frame_is_skipped_and_counted(inspected, tmp_path):
    cfg, _ = inspected
    conn = sqlite3.connect(load_config(cfg).db_path)
    part = conn.execute("SELECT part_id FROM inspections WHERE image_path IS NULL LIMIT 1").fetchone()[0]
    conn.close()
    assert part not in {r["part_id"] for r in queue(cfg)["queue"]}  # a confident pass, not audited
    assert cli("review", "label", part, "--config", cfg, "--label", "good").returncode == 0
    r = cli("dataset", "export", "--config", cfg, "--out", tmp_path / "ds", "--json")
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)["counts"]
    assert counts["total"] == 0 and counts["skipped"] == {"no_image": 1}


def test_a_defective_label_without_a_type_is_kept_and_said_to_be_left_out_of_the_dataset(inspected, tmp_path):
    cfg, _ = inspected
    conn = sqlite3.connect(load_config(cfg).db_path)
    part = conn.execute("SELECT part_id FROM inspections WHERE image_path IS NOT NULL LIMIT 1").fetchone()[0]
    conn.close()
    r = cli("review", "label", part, "--config", cfg, "--label", "defective", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] == "defective" and "label_without_type" in r.stderr
    r = cli("dataset", "export", "--config", cfg, "--out", tmp_path / "ds", "--json")
    assert json.loads(r.stdout)["counts"]["skipped"] == {"defect_type_not_in_recipe": 1}
    r = cli("review", "label", part, "--config", cfg, "--label", "good")  # a label with nothing missing
    assert r.returncode == 0 and "label_without_type" not in r.stderr
