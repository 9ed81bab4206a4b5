"""The light field: a frame lit otherwise is brought to the reference's grey levels on copper and
substrate alike, however few pixels the bright level has."""

import numpy as np
import pytest

from edge_inspector.regions.photometry import match_light


def _board(h=240, w=320):
    ref = np.full((h, w), 45.0, np.float32)
    ref[40:52, :] = 205.0  # a few bright traces: 15 % of the pixels
    ref[:, 100:110] = 205.0
    ref[150:160, 20:300] = 205.0
    return ref


@pytest.mark.parametrize("order", [0, 2])
def test_a_gain_an_offset_and_a_gradient_are_undone(order):
    ref = _board()
    h, w = ref.shape
    ramp = np.linspace(0.85, 1.15, w, dtype=np.float32)[None, :] if order else 1.0
    frame = np.clip(ref * 1.2 * ramp + 12, 0, 255).astype(np.float32)
    valid = np.ones_like(ref, np.uint8)
    out = match_light(frame, ref, valid, order)
    copper, substrate = ref > 100, ref < 100
    assert np.abs(out[copper] - 205).max() < (6 if order else 3)
    assert np.abs(out[substrate] - 45).max() < (6 if order else 3)


def test_a_binarised_frame_keeps_its_two_levels():
    ref = _board()
    frame = np.where(ref > 100, 255.0, 0.0).astype(np.float32)
    out = match_light(frame, ref, np.ones_like(ref, np.uint8), 2)
    assert np.abs(out[ref > 100] - 205).max() < 2
    assert np.abs(out[ref < 100] - 45).max() < 2


def test_a_defect_does_not_pull_the_light():
    ref = _board()
    frame = ref * 0.9 + 5
    frame[150:160, 120:200] = 45 * 0.9 + 5  # an open: copper missing over 80 px of a trace
    out = match_light(frame.astype(np.float32), ref, np.ones_like(ref, np.uint8), 2)
    assert np.abs(out[40:52, :] - 205).max() < 3
