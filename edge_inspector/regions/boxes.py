"""From an anomaly map to scored boxes: threshold, connected components, area filter, padding.

Boxes are padded like a human annotation (the defect plus a margin, never smaller than a minimum
size), because the judge's crops and the people who review the reject images both need context.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Box, MapSummary


class BoxParams(ConfigModel):
    threshold: float = Field(1.0, gt=0, description="Anomaly level (tolerance units) above which a "
                             "pixel is anomalous; a part with a box scores at least this.")
    min_area_px: int = Field(5, ge=1, description="Smallest anomalous area that makes a box.")
    merge_distance_px: int = Field(3, ge=0, description="Anomalous pixels closer than this belong "
                                   "to the same box.")
    margin_px: int = Field(6, ge=0, description="Margin added around each box.")
    min_size_px: int = Field(24, ge=1, description="Smallest box side after padding.")
    max_boxes: int = Field(32, ge=1, description="At most this many boxes per frame, best first.")


def components(a: np.ndarray, p: BoxParams):
    """The map's pixels over the threshold grouped as boxes group them (merged within
    ``merge_distance_px``): ``(n, labels, on, area, peak)`` per group (label 0 is the background),
    or None when no pixel is over the threshold."""
    binary = (a > p.threshold).astype(np.uint8)
    if not binary.any():
        return None
    grouped = binary
    if p.merge_distance_px:
        k = 2 * p.merge_distance_px + 1
        grouped = cv2.dilate(binary, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels = cv2.connectedComponents(grouped, connectivity=8)
    on = binary.astype(bool)
    lab = labels[on]
    area = np.bincount(lab, minlength=n)
    peak = np.zeros(n, np.float32)
    np.maximum.at(peak, lab, a[on])
    return n, labels, on, area, peak


def boxes_from_map(a: np.ndarray, p: BoxParams,
                   to_frame_box: Callable[[tuple[float, float, float, float]], tuple[float, ...]],
                   frame_shape: tuple[int, int]) -> list[Box]:
    found = components(a, p)
    if found is None:
        return []
    n, labels, on, area, peak = found
    lab = labels[on]
    ys, xs = np.nonzero(on)
    x1 = np.full(n, np.iinfo(np.int32).max)
    y1 = x1.copy()
    x2 = np.full(n, -1)
    y2 = x2.copy()
    np.minimum.at(x1, lab, xs)
    np.minimum.at(y1, lab, ys)
    np.maximum.at(x2, lab, xs + 1)
    np.maximum.at(y2, lab, ys + 1)
    keep = [i for i in range(1, n) if area[i] >= p.min_area_px]
    keep.sort(key=lambda i: -float(peak[i]))
    h, w = frame_shape
    out = []
    for i in keep[: p.max_boxes]:
        fx1, fy1, fx2, fy2 = to_frame_box((float(x1[i]), float(y1[i]), float(x2[i]), float(y2[i])))
        out.append(Box(*pad_box((fx1, fy1, fx2, fy2), p.margin_px, p.min_size_px, w, h),
                       score=float(peak[i]), area_px=int(area[i])))
    return out


def pad_box(box: tuple[float, float, float, float], margin: int, min_size: int, width: int,
            height: int) -> tuple[int, int, int, int]:
    """Grow a box by ``margin``, then to ``min_size`` around its centre, and keep it in the image."""
    x1, y1, x2, y2 = box
    x1, y1, x2, y2 = x1 - margin, y1 - margin, x2 + margin, y2 + margin
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = max(x2 - x1, min_size) / 2, max(y2 - y1, min_size) / 2
    x1, x2 = cx - half_w, cx + half_w
    y1, y2 = cy - half_h, cy + half_h
    # shift inside the image rather than cut, so a box at the border keeps its size
    dx = max(0.0, -x1) - max(0.0, x2 - width)
    dy = max(0.0, -y1) - max(0.0, y2 - height)
    x1, x2, y1, y2 = x1 + dx, x2 + dx, y1 + dy, y2 + dy
    return (max(0, int(round(x1))), max(0, int(round(y1))), min(width, int(round(x2))),
            min(height, int(round(y2))))


def summarize(a: np.ndarray, valid: np.ndarray, boxes: list[Box],
              threshold: float) -> tuple[MapSummary, float]:
    """The map's summary and the frame's anomaly score (>= threshold exactly when there is a box)."""
    values = a[valid > 0] if valid is not None else a.ravel()
    if values.size == 0:
        values = np.zeros(1, np.float32)
    summary = MapSummary(max=float(values.max()), mean=float(values.mean()),
                         p99=float(np.percentile(values, 99)), area_over_px=int((values > threshold).sum()))
    if boxes:
        return summary, max(b.score for b in boxes)
    # no box: the strongest evidence that survives a 3x3 erosion, kept below the threshold
    robust = float(cv2.erode(a, np.ones((3, 3), np.uint8)).max()) if a.size else 0.0
    return summary, min(robust, threshold * 0.999)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N x 4) with every box in ``b`` (M x 4); x2, y2 exclusive."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou(a, b) -> float:
    """IoU of two boxes ``[x1, y1, x2, y2]`` (x2, y2 exclusive); 0 when both are empty."""
    return float(box_iou(np.asarray(a), np.asarray(b))[0, 0])
