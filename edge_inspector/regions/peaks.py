"""Peaks of an anomaly map: where SAM is prompted, and the map's own box around each peak.

A peak is a local maximum over the threshold, at least ``min_distance_px`` from every stronger
peak. The search is bounded whatever the map looks like: a plateau or a map of noise with thousands
of local maxima yields at most ``max_peaks`` peaks, the strongest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_MAX_CANDIDATES = 4096  # local maxima considered before the distance suppression


@dataclass(frozen=True, slots=True)
class Peak:
    x: int
    y: int
    value: float
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive) of the peak's component over the threshold


def find_peaks(a: np.ndarray, threshold: float, max_peaks: int, min_distance_px: int = 8) -> list[Peak]:
    """The strongest local maxima of ``a`` over ``threshold``, strongest first."""
    if a is None or a.size == 0 or max_peaks <= 0:
        return []
    a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    over = a > threshold
    if not over.any():
        return []
    r = max(1, int(min_distance_px))
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    is_max = (a >= cv2.dilate(a, k)) & over
    ys, xs = np.nonzero(is_max)
    vals = a[ys, xs]
    if vals.size > _MAX_CANDIDATES:
        top = np.argpartition(-vals, _MAX_CANDIDATES)[:_MAX_CANDIDATES]
        ys, xs, vals = ys[top], xs[top], vals[top]
    order = np.argsort(-vals, kind="stable")
    ys, xs, vals = ys[order], xs[order], vals[order]
    keep: list[int] = []
    alive = np.ones(len(vals), bool)
    for i in range(len(vals)):  # greedy: a plateau's many equal maxima become one peak
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_peaks:
            break
        near = (np.abs(xs - xs[i]) <= r) & (np.abs(ys - ys[i]) <= r)
        alive &= ~near
    n, labels, stats, _ = cv2.connectedComponentsWithStats(over.astype(np.uint8), connectivity=8)
    out = []
    for i in keep:
        x, y = int(xs[i]), int(ys[i])
        s = stats[labels[y, x]]
        box = (int(s[0]), int(s[1]), int(s[0] + s[2]), int(s[1] + s[3]))
        out.append(Peak(x, y, float(vals[i]), box))
    return out
