import cv2
import numpy as np
import pytest

from edge_inspector.synth.pcb import make_board
from edge_inspector.synth.recapture import Recapture, move_box, point_error, recapture


def _square_image():
    img = np.full((200, 300), 40, np.uint8)
    img[80:100, 150:170] = 220
    return img


def test_a_box_moves_with_the_part():
    rng = np.random.default_rng(1)
    img, m = recapture(_square_image(), rng, Recapture(noise_sigma=(0, 0), jpeg_quality=(100, 100)))
    box = move_box((150, 80, 170, 100), m, img.shape)
    x1, y1, x2, y2 = box
    bright = img > 130
    assert bright.sum() > 300
    inside = bright[y1:y2, x1:x2].sum()
    assert inside >= 0.97 * bright.sum(), "the bright square lies inside its moved box"


def test_a_fixed_rotation_is_that_angle_either_way():
    rng = np.random.default_rng(2)
    _, m = recapture(_square_image(), rng, Recapture(perspective_px=0).at_rotation(2.0))
    angle = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
    assert abs(abs(angle) - 2.0) < 1e-6


def test_kinds():
    rng = np.random.default_rng(3)
    gray, _ = recapture(_square_image(), rng, kind="gray")
    binary, _ = recapture(_square_image(), rng, kind="binary")
    color, _ = recapture(_square_image(), rng, kind="color")
    assert gray.ndim == 2 and color.shape == (200, 300, 3)
    # binarised, then JPEG: nearly every pixel is close to 0 or 255
    assert np.mean((binary < 40) | (binary > 215)) > 0.97
    assert len(np.unique(gray)) > 40


def test_a_box_that_left_the_field_is_dropped():
    m = np.eye(3)
    m[0, 2] = -290.0
    assert move_box((0, 10, 20, 30), m, (200, 300)) is None
    m[0, 2] = -5.0
    assert move_box((0, 10, 20, 30), m, (200, 300)) == (0, 10, 15, 30)


def test_point_error():
    truth = np.eye(3)
    est = np.eye(3)
    est[0, 2] = 0.5
    assert point_error(est, truth, 100, 100) == pytest.approx((0.5, 0.5))


def test_boards_carry_their_transform_and_moved_truth(design):
    board = make_board(design, 41, defects=["spurious_copper"], kind="binary")
    golden = make_board(design, 41, defects=["spurious_copper"], jitter=None)
    assert board.transform is not None and golden.transform is None
    (d,) = board.defects
    moved = move_box(golden.defects[0].box, board.transform, board.image.shape)
    assert d.box == moved
    # the defect's pixels moved into its moved box: the board differs from a clean capture there
    clean = make_board(design, 41, defects=[], kind="binary").image
    diff = cv2.absdiff(board.image, clean) > 128
    x1, y1, x2, y2 = d.box
    assert diff[y1:y2, x1:x2].sum() > 5


def test_a_defect_cut_by_the_fields_edge_is_partial_not_required():
    from edge_inspector.synth.pcb import Defect, moved_truth

    d = Defect("pin_hole", (2, 2, 28, 28), core=(10, 10, 20, 20))
    m = np.eye(3)
    for dx, expect in ((-8.0, "seen"), (-15.0, "cut"), (-30.0, "gone")):
        m[0, 2] = dx
        seen, cut = moved_truth([d], m, (200, 300))
        # in view: half of the changed pixels' box inside the frame less its outermost 4 px
        assert (len(seen), len(cut)) == {"seen": (1, 0), "cut": (0, 1), "gone": (0, 0)}[expect], dx
