"""The command line as a user runs it."""

import json
import subprocess
import sys

import cv2
import pytest

from edge_inspector.synth.pcb import make_board, reference_board


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edge_inspector", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_config_check_names_the_bad_key_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  deadline_ms: soon\nregions:\n  tolerance: 3\n")
    r = cli("config", "check", str(bad))
    assert r.returncode == 2
    assert "policy.deadline_ms: Input should be a valid number" in r.stderr
    assert "regions.tolerance: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_config_check_accepts_the_demo_config_and_overrides():
    r = cli("config", "check", "configs/demo.yaml", "--set", "policy.deadline_ms=500", "--show")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["policy"]["deadline_ms"] == 500


def test_bad_override_exits_2():
    r = cli("config", "check", "configs/demo.yaml", "--set", "policy.deadline_ms=-1")
    assert r.returncode == 2 and "policy.deadline_ms" in r.stderr


def test_schema_is_json_with_descriptions():
    r = cli("config", "schema")
    schema = json.loads(r.stdout)
    assert schema["$defs"]["PolicyConfig"]["properties"]["deadline_ms"]["description"]


@pytest.fixture
def boards(tmp_path, design):
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), reference_board(design).image)
    bad = make_board(design, 77, defects=["short", "open"])
    cv2.imwrite(str(tmp_path / "bad.png"), bad.image)
    cv2.imwrite(str(tmp_path / "good.jpg"), make_board(design, 78).image)
    (tmp_path / "broken.jpg").write_bytes((tmp_path / "good.jpg").read_bytes()[:500])
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path, bad


def test_inspect_one_image_one_shot(boards):
    root, bad = boards
    r = cli("inspect", str(root / "bad.png"), "--reference", str(root / "ref.png"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"] == "REJECT" and len(out["regions"]) >= 2
    assert {"id", "decision", "score", "regions", "timings_ms"} <= set(out)


def test_inspect_manifest_one_line_per_input_in_order(boards):
    root, _ = boards
    lines = [{"id": "a", "image": "bad.png", "reference": "ref.png"},
             {"id": "b", "image": "good.jpg", "reference": "ref.png"},
             {"id": "c", "image": "broken.jpg", "reference": "ref.png"},
             {"id": "d", "image": "empty.png", "reference": "ref.png"},
             {"id": "e", "image": "missing.png", "reference": "ref.png"}]
    manifest = root / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    r = cli("inspect", "--manifest", str(manifest), "--json")
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a", "b", "c", "d", "e", "line-6"]
    assert [o["decision"] for o in out] == ["REJECT", "PASS", "NO-READ", "NO-READ", "NO-READ", "NO-READ"]
    assert "truncated JPEG" in out[2]["detail"] and "empty file" in out[3]["detail"]
    assert all(o["reason"] == "unreadable_frame" for o in out[2:])


def test_inspect_without_reference_or_config_explains(boards):
    root, _ = boards
    r = cli("inspect", str(root / "bad.png"))
    assert r.returncode == 2 and "regions.reference" in r.stderr


def test_status_after_a_run(station_config):
    cfg = station_config()
    assert cli("run", "--config", str(cfg), "--max-parts", "6").returncode == 0
    r = cli("status", "--config", str(cfg), "--json")
    status = json.loads(r.stdout)
    assert status["totals"]["parts"] == 6 and len(status["last"]) == 6
    human = cli("status", "--config", str(cfg), "-n", "3").stdout
    assert "parts 6" in human and "last 3 decisions" in human


@pytest.fixture
def hostile(boards):
    """A hostile PNG header, a cut JPEG with an end marker appended, a FIFO: then good parts."""
    import os

    from tests.unit.test_imageio import hostile_png

    root, _ = boards
    (root / "huge.png").write_bytes(hostile_png())
    good = (root / "good.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(good[: len(good) // 2] + b"\xff\xd9")
    os.mkfifo(root / "fifo.png")
    return root


def test_inspect_refuses_hostile_and_cut_images_by_name_and_goes_on(hostile):
    root = hostile
    lines = [{"id": i, "image": i, "reference": "ref.png"}
             for i in ("huge.png", "cut.jpg", "fifo.png", "good.jpg")]
    (root / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = cli("inspect", "--manifest", str(root / "m.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "cv2.error" not in r.stderr
    out = {o["id"]: o for o in map(json.loads, r.stdout.splitlines())}
    assert list(out) == ["huge.png", "cut.jpg", "fifo.png", "good.jpg"]
    for bad in ("huge.png", "cut.jpg", "fifo.png"):
        assert (out[bad]["decision"], out[bad]["reason"], out[bad]["action"]) == (
            "NO-READ", "unreadable_frame", "REJECT"), out[bad]
    assert "60000x60000 pixels is over the limit" in out["huge.png"]["detail"]
    assert "truncated JPEG" in out["cut.jpg"]["detail"]
    assert "not a regular file (a FIFO)" in out["fifo.png"]["detail"]
    assert out["good.jpg"]["decision"] == "PASS"


def test_a_replay_through_hostile_images_records_every_part_and_exits_0(hostile, station_config):
    import sqlite3

    replay = hostile / "replay"
    replay.mkdir()
    for prefix, name in zip("abcd", ("huge.png", "cut.jpg", "fifo.png", "good.jpg"), strict=True):
        (hostile / name).rename(replay / f"{prefix}-{name}")
    cfg = station_config(capture={"kind": "folder", "path": str(replay)},
                         regions={"reference": str(hostile / "ref.png")})
    r = cli("run", "--config", str(cfg), timeout=180)
    assert r.returncode == 0, r.stderr
    from edge_inspector.config import load_config

    db = sqlite3.connect(load_config(cfg).db_path)
    rows = db.execute("SELECT source, outcome, reason FROM inspections ORDER BY seq").fetchall()
    assert [(s.rsplit("/", 1)[1], o, r) for s, o, r in rows] == [
        ("a-huge.png", "NO-READ", "unreadable_frame"), ("b-cut.jpg", "NO-READ", "unreadable_frame"),
        ("c-fifo.png", "NO-READ", "unreadable_frame"), ("d-good.jpg", "PASS", "ok")]
