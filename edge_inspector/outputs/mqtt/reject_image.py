"""The reject image for ``.../reject_image``: JPEG with the boxes drawn, scaled down to fit a cap."""

from __future__ import annotations

import cv2

from edge_inspector.envelope import Inspection
from edge_inspector.outputs.images import overlay


def encode(inspection: Inspection, max_bytes: int, quality: int = 85) -> bytes | None:
    """The JPEG, at most ``max_bytes`` (scaled down step by step), or None when it never fits."""
    image = inspection.frame.image
    if image is None:
        return None
    img = overlay(image, inspection)
    for _ in range(8):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and buf.size <= max_bytes:
            return buf.tobytes()
        h, w = img.shape[:2]
        if min(h, w) < 48:
            return None
        img = cv2.resize(img, (int(w * 0.7), int(h * 0.7)), interpolation=cv2.INTER_AREA)
        quality = max(50, quality - 10)
    return None
