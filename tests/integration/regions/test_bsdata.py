"""The texture model on real images: BSData ball-screw surfaces with pitting polygons
(../shared/data/bsdata beside the repository, or $BSDATA_DIR; CC BY-SA 4.0, see its ATTRIBUTION.md).
The data tests are skipped when the folder is absent.

Fitted on the authors' train split (the known-good areas: the pitting polygons masked out), scored on
their test split and on the unannotated images, at the default and at a higher sensitivity. The floors
sit below what ``python tools/bsdata.py --out DIR --sweep`` measures (docs/regions.md): they catch a
method that stops finding pits or starts boxing the unannotated surfaces."""

import os
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("BSDATA_DIR", REPO.parent / "shared" / "data" / "bsdata"))
sys.path.insert(0, str(REPO / "tools"))

import bsdata  # noqa: E402
from evaluate import match_boxes  # noqa: E402

needs_data = pytest.mark.skipif(not (DATA / "index.json").is_file(), reason=f"{DATA} is absent")


@pytest.fixture(scope="module")
def sweep():
    items = bsdata.load_index(DATA)
    model = bsdata.fit(bsdata.texture_config([]), [i for i in items if i["split"] == "train"])
    pitted = bsdata.scored(model, [i for i in items if i["split"] == "test"])
    clean = bsdata.scored(model, [i for i in items if i["split"] is None and not i["polygons"]])
    rows = {r["sensitivity"]: r for r in bsdata.sweep_rows(model, pitted, clean, (1.0, 1.4))}
    return {**rows, "model": model, "items": items}


@needs_data
@pytest.mark.slow
def test_the_position_explainer_serves_only_aligned_views(sweep):
    # the type-2 views (a rig) come in two sizes with many images each; the type-1 crops each have a
    # size of their own, and their working grids match (max_side_px caps them): not aligned views
    model, items = sweep["model"], sweep["items"]
    assert set(model.aligned) == {(460, 1130), (645, 1540)}
    assert all(len(v) >= model.cfg.position_k for v in model.aligned.values())
    type1 = [i for i in items if i["split"] == "test" and int(i["bsd_type"]) == 1]
    assert type1 and all(tuple(cv2.imread(i["path"]).shape[:2]) not in model.aligned for i in type1)


@needs_data
@pytest.mark.slow
def test_the_test_split_at_the_default(sweep):
    r = sweep[1.0]
    # measured: 11 of 18 pits at IoU > 0.33, 11 of 14 images flagged, 3 boxes on 24 unannotated
    # images (before the filter bank's finest scale, 0.5 working px: 7 of 18, 7 of 14, 2 boxes;
    # before the position explainer was keyed by the frame's size and the self slack: 5 of 18)
    assert r["pits"] == 18
    assert r["found"] >= 9, r
    assert r["images_flagged"] >= 0.64, r
    assert r["boxes_per_unannotated_image"] <= 0.25, r


@needs_data
@pytest.mark.slow
def test_the_test_split_at_sensitivity_1_4(sweep):
    r = sweep[1.4]
    # measured: 13 of 18 pits, 13 of 14 images flagged, 0.96 boxes per unannotated image (before the
    # finest scale: 13 of 18 at 0.54)
    assert r["found"] >= 12, r
    assert r["boxes_per_unannotated_image"] <= 1.25, r
    assert r["recall"] >= sweep[1.0]["recall"]


def test_boxes_and_pits_are_matched_one_to_one():
    pits = [[0, 0, 10, 10], [12, 0, 22, 10]]
    assert len(match_boxes(pits, [[0, 0, 22, 10]], 0.33)) == 1  # one big box over two pits: one hit
    assert len(match_boxes(pits[:1], [[0, 0, 10, 10], [1, 0, 10, 10]], 0.33)) == 1  # two boxes, one pit
    # a box that matches both pits goes to the one no other box can take
    assert len(match_boxes(pits, [[0, 0, 16, 10], [12, 0, 21, 10]], 0.33)) == 2
    assert match_boxes([], [[0, 0, 1, 1]]) == [] and match_boxes(pits, []) == []


def test_groups_keep_one_position_in_one_fold():
    a = {"image": "images/01_200907165704_395000_270_crop_2.jpg"}
    b = {"image": "images/01_200906113114_395000_270_crop_2.jpg"}
    c = {"image": "images/KGT1-S-074-A02_crop_0.jpg"}
    assert bsdata.position(a) == bsdata.position(b) == "395000_270"
    assert bsdata.position(c) != bsdata.position(a)


def test_the_sweep_plot(tmp_path):
    rows = [{"sensitivity": s, "recall": min(1.0, 0.3 * s), "boxes_per_unannotated_image": 0.2 * s * s}
            for s in (0.5, 1.0, 1.5, 2.0, 4.0)]
    bsdata.plot(tmp_path / "p.png", rows, lambda r: r["boxes_per_unannotated_image"], "t", "x")
    img = cv2.imread(str(tmp_path / "p.png"))
    assert img is not None and img.shape == (520, 760, 3)
    red = (img[:, :, 2] > 180) & (img[:, :, 1] < 60) & (img[:, :, 0] < 60)
    assert red.sum() > 100  # the default's point (and its legend) are drawn
    blue = (img[:, :, 0] > 150) & (img[:, :, 2] < 100)
    assert blue.sum() > 200  # the curve
