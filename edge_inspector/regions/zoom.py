"""Zoom: each box cropped with a margin, made square, and resized to the judge's input size.

The judge sees small defects at a resolution it can read. A crop is centred on its box; near the
border it is shifted to stay inside the frame, and only when the square is larger than the frame
itself is it padded (with the frame's edge pixels), so a crop never shows a black band that the judge
could mistake for a defect.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Box


class ZoomConfig(ConfigModel):
    size: int = Field(448, ge=16, le=2048, description="Side of each square crop in pixels (the judge's "
                      "crop input size).")
    margin: float = Field(0.25, ge=0, le=4, description="Context around the box on each side, as a "
                          "fraction of the box's longer side.")
    min_side_px: int = Field(48, ge=1, description="Smallest square cut from the frame: a tiny box is "
                             "shown with this much context rather than magnified from a few pixels.")
    max_crops: int = Field(4, ge=0, le=64, description="At most this many crops per frame, by box score.")


def crop_square(image: np.ndarray, box: Box | tuple[int, int, int, int], margin: float, size: int,
                min_side: int = 1) -> np.ndarray:
    """The square crop around ``box`` (with ``margin``), resized to ``size`` x ``size``."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box.as_list() if isinstance(box, Box) else box
    side = max(x2 - x1, y2 - y1, 1)
    side = int(round(max(side * (1 + 2 * margin), min_side)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    # shift inside the frame where it fits; pad only what cannot fit
    left = min(max(left, 0), max(w - side, 0))
    top = min(max(top, 0), max(h - side, 0))
    if left + side > w and w < side:
        left = (w - side) // 2
    if top + side > h and h < side:
        top = (h - side) // 2
    sx1, sy1, sx2, sy2 = max(left, 0), max(top, 0), min(left + side, w), min(top + side, h)
    patch = image[sy1:sy2, sx1:sx2]
    pad = (sy1 - top, top + side - sy2, sx1 - left, left + side - sx2)
    if any(pad):
        patch = cv2.copyMakeBorder(patch, *pad, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


def zoom(image: np.ndarray, boxes: tuple[Box, ...] | list[Box], cfg: ZoomConfig) -> tuple[np.ndarray, ...]:
    """Crops of the first ``max_crops`` boxes. ``boxes`` are best first (the regions stage sorts them
    by score), so ``crops[i]`` belongs to ``boxes[i]``."""
    return tuple(crop_square(image, b, cfg.margin, cfg.size, cfg.min_side_px) for b in boxes[: cfg.max_crops])
