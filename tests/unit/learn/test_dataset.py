"""The dataset reader: the exporter's layout read as is, every defect named (file, line, what)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edge_inspector.learn.dataset import DatasetError, load_dataset
from edge_inspector.learn.train import batch_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration/learn"))

from dataset_fixture import write_dataset  # noqa: E402


@pytest.fixture
def ds(tmp_path):
    return write_dataset(tmp_path / "ds", n_train=3, n_val=1)


def test_the_fixture_reads_back(ds):
    data = load_dataset(ds)
    assert [e.id for e in data.train] == ["part-000", "part-001", "part-002"] and len(data.val) == 1
    ex = data.train[1]
    assert ex.label == "defective" and ex.defect_type == "open"
    assert ex.answer.startswith("defective: yes\ndefect_type: open")
    assert [m["role"] for m in ex.prompt] == ["system", "user"]
    assert all(p.is_absolute() and p.is_file() for p in ex.images) and len(ex.images) == 2


def _rewrite(ds: Path, split: str, change) -> None:
    lines = [json.loads(x) for x in (ds / f"{split}.jsonl").read_text().splitlines()]
    change(lines)
    (ds / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_plain_string_content_is_one_text_part(ds):
    def strings(lines):
        lines[0]["messages"][0]["content"] = "the system text"
        lines[0]["messages"][2]["content"] = "defective: no"
    _rewrite(ds, "train", strings)
    ex = load_dataset(ds, verify=False).train[0]
    assert ex.messages[0]["content"] == [{"type": "text", "text": "the system text"}] and ex.answer == "defective: no"


def test_a_file_changed_after_export_is_refused(ds):
    _rewrite(ds, "train", lambda lines: lines.pop())
    with pytest.raises(DatasetError, match="train.jsonl does not match its sha256"):
        load_dataset(ds)
    assert len(load_dataset(ds, verify=False).train) == 2


@pytest.mark.parametrize("change, message", [
    (lambda ls: ls[1].update(label="maybe"), "line 2: label must be one of good, defective"),
    (lambda ls: ls[0].pop("messages"), "line 1: missing key 'messages'"),
    (lambda ls: ls[0]["messages"].pop(), r"messages must be \[system,\] user, assistant"),
    (lambda ls: ls[2]["messages"][1]["content"][1].update(image="images/nope.png"),
     "line 3: user content\\[1\\] names an image that is not there: images/nope.png"),
    (lambda ls: ls[0]["messages"][2].update(content=[{"type": "text", "text": "  "}]), "answer is empty"),
    (lambda ls: ls[0]["messages"][1]["content"].append({"type": "video"}), "must be {'type': 'text'"),
])
def test_a_malformed_line_is_named(ds, change, message):
    _rewrite(ds, "train", change)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(ds, verify=False)
    assert "train.jsonl" in str(err.value)


def test_a_manifest_of_another_format_is_refused(ds):
    m = json.loads((ds / "manifest.json").read_text())
    (ds / "manifest.json").write_text(json.dumps({**m, "format": "something/2"}))
    with pytest.raises(DatasetError, match="format must be 'edge-inspector-dataset/1'"):
        load_dataset(ds)
    (ds / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="no manifest.json"):
        load_dataset(ds)


def test_batches_cover_each_epoch_once_and_depend_on_seed_and_step_only():
    n, batch = 5, 2
    seen = [i for s in range(5) for i in batch_indices(s, batch, n, seed=3)]  # two epochs
    assert sorted(seen[:5]) == list(range(5)) and sorted(seen[5:]) == list(range(5))
    assert batch_indices(4, batch, n, seed=3) == batch_indices(4, batch, n, seed=3)
    assert [batch_indices(s, 1, 50, 0) for s in range(50)] != [batch_indices(s, 1, 50, 1) for s in range(50)]


def _images_of(line: dict) -> list[dict]:
    return [p for m in line["messages"] if isinstance(m["content"], list) for p in m["content"]
            if p["type"] == "image"]


def test_image_roles_are_kept_and_a_wrong_role_is_named(ds):
    def name_roles(lines):
        for line in lines:
            for part, role in zip(_images_of(line), ("reference", "frame")):
                part["role"] = role
    _rewrite(ds, "train", name_roles)
    assert load_dataset(ds, verify=False).train[0].image_roles == ["reference", "frame"]

    def bad(lines):
        _images_of(lines[0])[0]["role"] = "thumbnail"
    _rewrite(ds, "train", bad)
    with pytest.raises(DatasetError, match=r"train.jsonl line 1: .*role must be one of frame, crop, reference"):
        load_dataset(ds, verify=False)


def test_each_role_is_shown_at_the_judges_limit_capped_by_max_pixels():
    from edge_inspector.learn.train import role_limits

    judge = {"frame_max_pixels": 512 * 512, "crop_max_pixels": 224 * 224, "reference_max_pixels": 4096 * 4096}
    assert role_limits(1024 * 1024, judge) == {"image": 1024 * 1024, "frame": 512 * 512, "crop": 224 * 224,
                                               "reference": 1024 * 1024}
    assert role_limits(256 * 256, None) == dict.fromkeys(("image", "frame", "crop", "reference"), 256 * 256)
