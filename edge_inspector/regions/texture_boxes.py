"""From the texture model's cell map to boxes, and its calibrated threshold.

Boxes: each local maximum over the threshold (strongest first) claims the connected region around it
where the map rises at least ``level`` of the way from the map's background (its median) to the peak;
a weaker maximum inside an earlier region joins it.
The box is that region's extent, grown about its centre. The extent follows the anomaly's own
strength, not the threshold: a pit gets the same box at any sensitivity, and two anomalies that touch
over a low threshold still get a box each (a component over the threshold would be one box, cut to
the stronger one's core).

Neighbour spots: the patch pooling makes one region of two small pits a few pixels apart; beside a
compact box, a separate compact dark spot of the frame (at its own resolution) gets a box of its own.

Threshold: the largest value of a known-good frame is an extreme value, so the per-image maxima of
held-out known-good maps follow a Gumbel distribution. Fitted on their lower half (the 25th and 50th
percentiles), the fit holds when up to half of the "good" images carry an unlabelled defect or wear
that sets their maximum: the threshold is the value that a good frame exceeds with a given
probability (the expected share of good frames with a false box), not the maximum of noisy areas.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from edge_inspector.envelope import Box
from edge_inspector.regions.boxes import BoxParams, pad_box

# ln(ln 2) and ln(ln 4): the Gumbel's median and lower quartile are mu + 0.3665 beta and mu - 0.3266 beta
_MEDIAN, _Q25 = -math.log(math.log(2.0)), -math.log(math.log(4.0))


def gumbel_threshold(maxima: np.ndarray, rate: float, units_per_image: int = 1) -> float:
    """The value that the maximum of a good image exceeds with probability ``rate``, from a Gumbel
    fitted to the lower half of ``maxima`` (each image may be cut into ``units_per_image`` parts,
    each part's maximum one sample)."""
    v = np.asarray(maxima, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no maxima to calibrate on")
    q25, q50 = np.quantile(v, [0.25, 0.5])
    # a floor on the spread: a few near-identical good images would put the threshold at their median
    beta = max((q50 - q25) / (_MEDIAN - _Q25), 0.05 * abs(q50), 1e-6)
    mu = q50 - _MEDIAN * beta
    unit_rate = 1.0 - (1.0 - rate) ** (1.0 / max(1, units_per_image))
    return float(mu - beta * math.log(-math.log(1.0 - unit_rate)))


def peak_regions(cells: np.ndarray, threshold: float, level: float, separation: int,
                 limit: int) -> list[tuple[float, int, int, int, int, int]]:
    """(peak, x1, y1, x2, y2, cells) of the strongest ``limit`` regions, in cells (x2, y2 exclusive)."""
    over = cells > threshold
    if not over.any():
        return []
    background = float(np.median(cells))
    k = 2 * max(1, separation) + 1
    local_max = over & (cells >= cv2.dilate(cells, np.ones((k, k), np.uint8)))
    ys, xs = np.nonzero(local_max)
    order = np.argsort(-cells[ys, xs], kind="stable")
    claimed = np.zeros(cells.shape, bool)
    out: list[tuple[float, int, int, int, int, int]] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        if claimed[y, x]:
            continue
        peak = float(cells[y, x])
        floor = background + level * (peak - background)
        _, labels = cv2.connectedComponents((cells >= floor).astype(np.uint8), connectivity=8)
        region = (labels == labels[y, x]) & ~claimed
        region[y, x] = True
        claimed |= region
        ry, rx = np.nonzero(region)
        out.append((peak, int(rx.min()), int(ry.min()), int(rx.max()) + 1, int(ry.max()) + 1,
                    int(region.sum())))
        if len(out) >= limit:
            break
    return out


def boxes_from_peaks(cells: np.ndarray, stride: int, p: BoxParams, level: float, grow: float,
                     to_frame: Callable[[float], float], frame_shape: tuple[int, int],
                     footprint: float = 0.0) -> list[Box]:
    """Boxes in frame pixels from a cell map in threshold units (cell (i, j) covers working pixels
    [stride*j, stride*(j+1)) x [stride*i, stride*(i+1)); ``to_frame`` maps working to frame pixels).
    ``footprint`` (working pixels): the width that the map's own blur (the patch pooling and the
    smoothing) gives a point-like anomaly at ``level``; it is taken off each region's width and height
    in quadrature (a blurred blob is about sqrt(size^2 + footprint^2) wide), so that a pit of a few
    pixels gets a box of its size, not of the patch's, while a large one keeps its extent."""
    h, w = frame_shape
    sep = max(1, int(round(p.merge_distance_px / stride)))
    out = []
    for peak, x1, y1, x2, y2, n in peak_regions(cells, p.threshold, level, sep, 4 * p.max_boxes):
        if n * stride * stride < p.min_area_px:
            continue
        cx, cy = stride * (x1 + x2) / 2, stride * (y1 + y2) / 2
        ew, eh = (_deblurred(stride * (v2 - v1), footprint, stride) for v1, v2 in ((x1, x2), (y1, y2)))
        hw, hh = grow * ew / 2, grow * eh / 2
        box = tuple(to_frame(v) for v in (cx - hw, cy - hh, cx + hw, cy + hh))
        margin, min_size = int(round(to_frame(p.margin_px))), int(round(to_frame(p.min_size_px)))
        out.append(Box(*pad_box(box, margin, min_size, w, h),
                       score=peak, area_px=int(round(to_frame(stride) ** 2 * n))))
        if len(out) >= p.max_boxes:
            break
    return out


def _deblurred(extent: float, footprint: float, floor: float) -> float:
    """A region's extent less the map's blur, in quadrature, at least ``floor``."""
    if footprint <= 0:
        return extent
    return max(math.sqrt(max(extent * extent - footprint * footprint, 0.0)), floor)


def dark_spots(gray: np.ndarray, sigmas: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A frame's compact dark spots at its own resolution: the scale-normalised Laplacian of Gaussian
    (positive at a dark spot's centre) relative to the local brightness (a Gaussian of sigma 8 px,
    taken at a quarter of the resolution: a direct blur that wide costs 100 times more), the strongest
    over ``sigmas`` (frame pixels), and the response per sigma (sigmas x rows x cols)."""
    g = gray.astype(np.float32) / 255.0
    h, w = g.shape
    small = cv2.resize(g, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    mean = cv2.resize(cv2.GaussianBlur(small, (0, 0), 2.0), (w, h), interpolation=cv2.INTER_LINEAR) + 0.05
    laps = np.stack([cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), sigma), cv2.CV_32F, ksize=3) * (sigma * sigma)
                     for sigma in sigmas])
    return laps.max(0) / mean, laps


def neighbour_boxes(boxes: list[Box], gray: np.ndarray, scale: float, sigmas: tuple[float, ...],
                    max_side: float, window: float, strength: float, limit: int,
                    quantile: float = 0.999) -> list[Box]:
    """``boxes`` and a box for each separate dark spot beside a compact one. The map's blur (the patch
    pooling) makes one region of two small pits a few pixels apart; at the frame's own resolution
    they are two spots. Around each box of at most ``max_side`` working pixels, the window grown by
    ``window`` about its centre is searched for local maxima of :func:`dark_spots` over ``strength``
    times the frame's ``quantile`` of it (the frame's own units) and over half the window's
    strongest; a maximum outside the box that touches no box yet gets a box of four sigmas (a spot's
    width with the annotation's margin), at most ``limit`` boxes in all. Frames without a compact box
    cost nothing."""
    compact = [b for b in boxes if max(b.x2 - b.x1, b.y2 - b.y1) * scale <= max_side]
    if not compact:
        return boxes
    spots, per_sigma = dark_spots(gray, sigmas)
    floor = strength * float(np.quantile(spots[::4, ::4], quantile))
    h, w = spots.shape
    out = list(boxes)
    taken = [b.as_list() for b in boxes]
    for b in compact:
        cx, cy = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2
        hw, hh = window * (b.x2 - b.x1) / 2, window * (b.y2 - b.y1) / 2
        x1, y1 = int(max(0, cx - hw)), int(max(0, cy - hh))
        x2, y2 = int(min(w, cx + hw)), int(min(h, cy + hh))
        win = spots[y1:y2, x1:x2]
        if win.size == 0:
            continue
        local_max = win >= cv2.dilate(win, np.ones((5, 5), np.uint8))
        peaks = local_max & (win > max(floor, 0.5 * float(win.max())))
        ys, xs = np.nonzero(peaks)
        for i in np.argsort(-win[ys, xs], kind="stable"):
            x, y = int(xs[i]) + x1, int(ys[i]) + y1
            if b.x1 <= x <= b.x2 and b.y1 <= y <= b.y2:
                continue  # the box's own pit
            r = 2.0 * sigmas[int(np.argmax(per_sigma[:, y, x]))]
            new = [max(0, round(x - r)), max(0, round(y - r)), min(w, round(x + r)), min(h, round(y + r))]
            if any(_touch(new, t) for t in taken):
                continue
            if len(out) >= limit:
                return out
            taken.append(new)
            out.append(Box(*new, score=b.score, area_px=int(round(4 * r * r))))
    return out


def _touch(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
