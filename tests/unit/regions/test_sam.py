"""SAM refinement with the tiny random SAM that tools/make_tiny_models.py builds, loaded through the
production path (build_regions with regions.sam_dir). Random weights: masks are arbitrary, so these
tests check the plumbing and the guards, not the masks' quality."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.config import load_config
from edge_inspector.envelope import Box
from edge_inspector.errors import StartupError
from edge_inspector.regions import build_regions
from edge_inspector.regions.refine import RefinedFinder
from edge_inspector.regions.sam import SamRefiner, SamSettings, _Mask, box_iou, merge_masks, nms
from edge_inspector.synth.pcb import make_board

REPO = Path(__file__).resolve().parents[3]
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "tools"))
    from make_tiny_models import save_sam

    return save_sam(tmp_path_factory.mktemp("tiny") / "sam")


@pytest.fixture(scope="module")
def refiner(sam_dir) -> SamRefiner:
    return SamRefiner(sam_dir, SamSettings(device="cpu", min_mask_score=0.0, max_mask_fraction=1.0))


def test_the_station_loads_sam_and_refines_boxes(sam_dir, product_dir, design):
    cfg = load_config(None, [f"regions.reference={product_dir / 'reference.png'}", f"regions.sam_dir={sam_dir}",
                             "regions.sam.device=cpu", "regions.sam.min_mask_score=0",
                             "regions.zoom.size=64"])
    finder = build_regions(cfg.regions)
    assert isinstance(finder, RefinedFinder) and "+sam-" in finder.fingerprint
    board = make_board(design, 31, defects=["short", "pin_hole"])
    r = finder.find(PartFactory(1.0).trigger("cam").frame(board.image))
    assert r.boxes and r.score >= finder.threshold
    assert all(0 <= b.x1 < b.x2 <= 640 and 0 <= b.y1 < b.y2 <= 640 for b in r.boxes)
    assert all(b.score >= finder.threshold for b in r.boxes)
    assert [b.score for b in r.boxes] == sorted((b.score for b in r.boxes), reverse=True)
    assert len(r.crops) == min(len(r.boxes), 4) and r.crops[0].shape[:2] == (64, 64)
    assert finder.sam_failures == 0


def test_clear_startup_errors_name_the_directory(tmp_path):
    with pytest.raises(StartupError, match=f"regions.sam_dir {tmp_path / 'nope'}: not a directory"):
        SamRefiner(tmp_path / "nope", SamSettings())
    with pytest.raises(StartupError, match="no config.json"):
        SamRefiner(tmp_path, SamSettings())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(StartupError, match="a 'bert' checkpoint, expected a SAM"):
        SamRefiner(tmp_path, SamSettings())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam"}))
    with pytest.raises(StartupError, match=f"regions.sam_dir {tmp_path}"):
        SamRefiner(tmp_path, SamSettings())  # a config without weights


def _frame_and_map(h=240, w=320):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    a = np.zeros((h, w), np.float32)
    a[100:120, 150:175] = 2.0
    a[110, 160] = 3.0
    return img, a


def test_an_empty_map_prompts_nothing(refiner, monkeypatch):
    img, _ = _frame_and_map()
    monkeypatch.setattr(refiner, "_masks", lambda *a: pytest.fail("SAM called without peaks"))
    assert refiner.refine(img, np.zeros((240, 320), np.float32), 1.0, ()) == []


def test_thousands_of_peaks_are_one_bounded_batch(refiner):
    img, _ = _frame_and_map()
    noise = np.random.default_rng(1).uniform(1.1, 4.0, (240, 320)).astype(np.float32)
    calls = []
    real = refiner._masks
    refiner._masks = lambda image, peaks: calls.append(len(peaks)) or real(image, peaks)
    try:
        t = time.monotonic()
        boxes = refiner.refine(img, noise, 1.0, (Box(0, 0, 320, 240, 4.0),))
        assert time.monotonic() - t < 10
    finally:
        del refiner._masks
    assert calls == [refiner.settings.max_prompts]
    assert boxes and all(b.score >= 1.0 for b in boxes)


def test_a_mask_over_the_whole_frame_keeps_the_map_box(sam_dir, monkeypatch):
    r = SamRefiner(sam_dir, SamSettings(device="cpu", min_mask_score=0.0, max_mask_fraction=0.25))
    img, a = _frame_and_map()
    monkeypatch.setattr(r, "_masks", lambda image, peaks: [(np.ones((240, 320), bool), 0.99) for _ in peaks])
    map_box = Box(145, 95, 180, 125, 3.0, 500)
    assert r.refine(img, a, 1.0, (map_box,)) == [map_box]


def test_a_good_mask_becomes_a_tight_box(refiner, monkeypatch):
    img, a = _frame_and_map()
    mask = np.zeros((240, 320), bool)
    mask[102:118, 152:170] = True
    monkeypatch.setattr(refiner, "_masks", lambda image, peaks: [(mask.copy(), 0.9) for _ in peaks])
    boxes = refiner.refine(img, a, 1.0, (Box(140, 90, 185, 130, 3.0),))
    assert [b.as_list() for b in boxes] == [[152, 102, 170, 118]]
    assert boxes[0].score == pytest.approx(3.0) and boxes[0].area_px == 16 * 18


def test_a_crop_at_the_border_through_sam(refiner, monkeypatch):
    img, _ = _frame_and_map()
    a = np.zeros((240, 320), np.float32)
    a[0:6, 310:320] = 2.0
    mask = np.zeros((240, 320), bool)
    mask[0:5, 312:320] = True
    monkeypatch.setattr(refiner, "_masks", lambda image, peaks: [(mask, 0.9) for _ in peaks])
    finder = RefinedFinder(_Fixed(a), load_config(None, []).regions, refiner)
    r = finder.find(PartFactory(1.0).trigger("cam").frame(img))
    assert r.boxes[0].as_list() == [312, 0, 320, 5]
    assert r.crops[0].shape == (448, 448, 3)


def test_a_sam_failure_keeps_the_map_boxes(refiner, monkeypatch):
    img, a = _frame_and_map()
    monkeypatch.setattr(refiner, "refine", lambda *args: (_ for _ in ()).throw(RuntimeError("CUDA OOM")))
    finder = RefinedFinder(_Fixed(a), load_config(None, []).regions, refiner)
    r = finder.find(PartFactory(1.0).trigger("cam").frame(img))
    assert r.boxes == _Fixed(a).boxes and finder.sam_failures == 1


def test_our_nms_and_mask_merge():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]
    assert box_iou(boxes[:1], boxes[2:])[0, 0] == 0.0
    m1 = np.zeros((40, 40), bool)
    m1[5:15, 5:15] = True
    m2 = np.zeros((40, 40), bool)
    m2[7:17, 7:17] = True
    m3 = np.zeros((40, 40), bool)
    m3[30:35, 30:35] = True
    merged = merge_masks([_Mask(m1, (5, 5, 15, 15), 2.0, []), _Mask(m2, (7, 7, 17, 17), 3.0, []),
                          _Mask(m3, (30, 30, 35, 35), 1.5, [])], iou=0.3)
    assert [m.box for m in merged] == [(5, 5, 17, 17), (30, 30, 35, 35)]


class _Fixed:
    """A regions model that returns one fixed map and its box."""

    threshold = 1.0
    fingerprint = "fixed"

    def __init__(self, a):
        from edge_inspector.envelope import MapSummary, Regions

        ys, xs = np.nonzero(a > 1.0)
        self.boxes = (Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, float(a.max())),)
        self.regions = Regions(score=float(a.max()), boxes=self.boxes, summary=MapSummary(float(a.max()), 0, 0, 1),
                               model="fixed", anomaly_map=a)

    def find(self, frame):
        return self.regions
