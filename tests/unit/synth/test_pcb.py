import numpy as np
import pytest

from edge_inspector.synth.pcb import DEFECT_KINDS, BoardDesign, make_board


def test_boards_are_deterministic(design):
    a, b = make_board(design, 3, defects=2), make_board(design, 3, defects=2)
    assert np.array_equal(a.image, b.image) and a.defects == b.defects
    assert not np.array_equal(a.image, make_board(design, 4, defects=2).image)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_changes_pixels_inside_its_box(design, kind):
    clean = make_board(design, 11, defects=[], jitter=None).image.astype(int)
    board = make_board(design, 11, defects=[kind], jitter=None)
    assert [d.kind for d in board.defects] == [kind]
    x1, y1, x2, y2 = board.defects[0].box
    diff = np.abs(board.image.astype(int) - clean) > 40
    assert diff.any()
    assert diff[y1:y2, x1:x2].sum() == diff.sum(), "every changed pixel lies inside the annotation box"
    assert x2 - x1 >= 16 and y2 - y1 >= 16


def test_good_boards_have_no_defects_and_jitter_moves_them(design):
    a, b = make_board(design, 1), make_board(design, 2)
    assert not a.defective and not b.defective
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 1


def test_designs_differ():
    assert not np.array_equal(BoardDesign(1).render(), BoardDesign(2).render())
