"""Two independent scans of one board (the template and the part, each binarised on its own) differ
by about a pixel along every edge: that must not reject good boards, and defects must still be found."""

from __future__ import annotations

import numpy as np

from edge_inspector.regions.boxes import box_iou
from edge_inspector.regions.variation import VariationConfig, VariationModel
from edge_inspector.synth.pcb import BoardDesign, make_board
from edge_inspector.synth.recapture import REFERENCE, Recapture, move_box, recapture, rescan

NOISE = 0.15  # edges of the two scans differ by about a pixel
CAP = Recapture().at_rotation(0.5)


def _scan(design: BoardDesign, seed: int, defects: list[str]):
    golden = make_board(design, seed, defects=defects, jitter=None)
    rng = np.random.default_rng([design.seed, seed, 11])
    img, m = recapture(rescan(golden.image, rng, NOISE), rng, CAP, "gray")
    return img, [b for b in (move_box(d.box, m, img.shape) for d in golden.defects) if b]


def _score(model: VariationModel, design: BoardDesign) -> tuple[int, int, int]:
    """Eight good second scans and two defective ones: (good boards rejected, defects boxed at IoU >
    0.33, defects). Every frame must read as a second scan."""
    rejected = found = truth = 0
    for s in range(1, 9):
        img, _ = _scan(design, s, [])
        r = model.find(img)
        assert r.registration["edge_noise"] > 0.4  # a second scan is noisy (a clean capture: < 0.3)
        rejected += bool(r.boxes)
    for s in range(9, 11):
        img, boxes = _scan(design, s, ["open", "short", "spurious_copper"])
        got = np.asarray([b.as_list() for b in model.find(img).boxes], float).reshape(-1, 4)
        truth += len(boxes)
        found += sum(bool(len(got)) and box_iou(np.asarray([b], float), got).max() > 0.33 for b in boxes)
    return rejected, found, truth


def _template(design: BoardDesign):
    return rescan(make_board(design, 0, jitter=None).image, np.random.default_rng(design.seed), NOISE)


def test_second_scans_of_good_boards_pass_and_defects_are_boxed():
    rejected = found = truth = 0
    for ds in (1201, 1202, 1203, 1204):
        design = BoardDesign(ds)
        r, f, t = _score(VariationModel(VariationConfig(), [_template(design)]), design)
        rejected, found, truth = rejected + r, found + f, truth + t
    # the former comparison (slivers of edge jitter boxed unless the frame's edge noise passed 0.8,
    # then a budget 1 px wider everywhere) rejected 7 of these 32 good boards; this one rejects 1
    assert rejected <= 2
    assert found >= 0.9 * truth


def test_known_good_scans_do_not_hide_that_a_frame_is_a_second_scan():
    """With further known-good scans (regions.good_images) the envelope is their union, wider than
    one scan's: a second scan's edges then show less excess against it. Whether a frame jags is
    judged against the reference's own envelope, so the blob test still applies and good boards
    pass (the union envelope alone let 6 of 100 such boards fail at 0 degrees on the eval designs)."""
    rejected = found = truth = 0
    for ds in (1201, 1202, 1203, 1204):
        design = BoardDesign(ds)
        rng = np.random.default_rng([ds, 1, 5])
        scan = rescan(make_board(design, 0, jitter=None).image, rng, NOISE)
        good = recapture(scan, rng, REFERENCE, "gray")[0]
        r, f, t = _score(VariationModel(VariationConfig(), [_template(design), good]), design)
        rejected, found, truth = rejected + r, found + f, truth + t
    assert rejected <= 1
    assert found >= 0.9 * truth
