import numpy as np
import pytest

from edge_inspector.envelope import Box
from edge_inspector.regions.peaks import find_peaks
from edge_inspector.regions.zoom import ZoomConfig, crop_square, zoom


def ramp(h=200, w=300, color=False):
    img = (np.arange(w)[None, :] * 255 // w + np.zeros((h, 1), int)).astype(np.uint8)
    return np.dstack([img, img, 255 - img]) if color else img


def test_crop_is_square_upscaled_and_centred():
    img = np.zeros((200, 300), np.uint8)
    img[90:110, 140:160] = 255
    c = crop_square(img, Box(140, 90, 160, 110, 1.0), margin=0.5, size=128)
    assert c.shape == (128, 128)
    assert c[64, 64] == 255 and c[2, 2] == 0  # the box in the middle, context around it
    assert c[:, :20].max() == 0 and c[:, -20:].max() == 0


def test_a_crop_at_the_border_shifts_inside_and_keeps_its_size():
    img = ramp(color=True)
    c = crop_square(img, Box(290, 190, 300, 200, 1.0), margin=0.25, size=64, min_side=40)
    assert c.shape == (64, 64, 3)
    # the window moved inside the frame: its right column is the frame's last column, no padding
    assert abs(int(c[10, -1, 0]) - int(img[10, -1, 0])) <= 3


def test_a_square_larger_than_the_frame_is_padded_with_edge_pixels():
    img = ramp(40, 60)
    c = crop_square(img, Box(0, 0, 60, 40, 1.0), margin=0.5, size=90)
    assert c.shape == (90, 90) and c.min() >= img.min() and c.max() <= img.max()


def test_zoom_takes_the_best_boxes_in_order_and_at_most_max_crops():
    img = ramp()
    boxes = (Box(10, 10, 20, 20, 5.0), Box(100, 50, 130, 80, 3.0), Box(200, 100, 210, 110, 2.0))
    crops = zoom(img, boxes, ZoomConfig(size=32, max_crops=2))
    assert len(crops) == 2 and all(c.shape == (32, 32) for c in crops)
    assert zoom(img, boxes, ZoomConfig(max_crops=0)) == ()
    assert zoom(img, (), ZoomConfig()) == ()


def test_peaks_are_bounded_and_plateaus_are_one_peak():
    a = np.zeros((100, 100), np.float32)
    a[40:60, 40:60] = 3.0  # a plateau
    peaks = find_peaks(a, 1.0, max_peaks=5, min_distance_px=30)
    assert len(peaks) == 1 and peaks[0].box == (40, 40, 60, 60)
    noise = np.random.default_rng(0).uniform(1.1, 5.0, (500, 500)).astype(np.float32)  # thousands of maxima
    peaks = find_peaks(noise, 1.0, max_peaks=8, min_distance_px=2)
    assert len(peaks) == 8 and peaks[0].value == pytest.approx(noise.max())
    assert find_peaks(np.zeros((10, 10), np.float32), 1.0, 8) == []
    assert find_peaks(np.zeros((0, 0), np.float32), 1.0, 8) == []
    nan = np.full((20, 20), np.nan, np.float32)
    assert find_peaks(nan, 1.0, 8) == []
