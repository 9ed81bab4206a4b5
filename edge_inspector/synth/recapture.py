"""A second capture of a part, the way a line makes one.

A part never sits twice in the same place under the camera: it arrives rotated (a conveyor allows a
couple of degrees), shifted (partly out of the field of view), at a slightly other distance (scale),
seen through a lens that is not exactly square to it (a slight perspective), under other light (gain,
offset and a gradient across the field), out of focus, with sensor noise, and is stored as a JPEG.
Scanned AOI data is binarised with a fixed threshold after all of that. :func:`recapture` does the
same to any image (a synthetic board or a real scan) and returns the 3x3 homography that maps the
source's coordinates to the new image's, so that ground-truth boxes move with it (:func:`move_box`).

Used by the demo's boards, ``tools/eval_synthetic.py`` and the tests; the same model judges real scans
(apply it to a real template and its defective scans). Nothing here is tuned to the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

Kind = Literal["gray", "binary", "color"]


@dataclass(frozen=True, slots=True)
class Recapture:
    """The ranges a re-capture is drawn from (uniform unless said otherwise)."""

    rotation_deg: float = 2.0  # +/- about the image centre
    shift_px: float = 25.0  # +/- in x and y: parts partly out of the field of view
    scale: float = 0.01  # +/- relative
    perspective_px: float = 1.5  # each corner moves by up to this much (a lens not square to the part)
    gain: float = 0.15  # +/- relative brightness
    offset: float = 15.0  # +/- grey levels
    gradient: float = 0.15  # +/- relative brightness change from the centre to the field's edge
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # defocus (Gaussian sigma, pixels)
    noise_sigma: tuple[float, float] = (1.0, 5.0)  # sensor noise (grey levels)
    jpeg_quality: tuple[int, int] = (75, 95)
    background: tuple[float, float] = (20.0, 90.0)  # grey level of what lies beyond the part
    # fixed rotation instead of a draw (evaluation bins); the sign is still drawn
    fixed_rotation_deg: float | None = None

    def at_rotation(self, degrees: float) -> Recapture:
        return replace(self, fixed_rotation_deg=degrees)


# a reference captured with care: the part centred and square to the camera, even light
REFERENCE = Recapture(rotation_deg=0.2, shift_px=2.0, scale=0.001, perspective_px=0.3, gain=0.05,
                      offset=5.0, gradient=0.03, blur_sigma=(0.3, 0.6), noise_sigma=(0.5, 2.0),
                      jpeg_quality=(95, 100))
NONE = Recapture(rotation_deg=0, shift_px=0, scale=0, perspective_px=0, gain=0, offset=0, gradient=0,
                 blur_sigma=(0, 0), noise_sigma=(0, 0), jpeg_quality=(100, 100))


def draw_homography(rng: np.random.Generator, cap: Recapture, width: int, height: int) -> np.ndarray:
    """A random pose: rotation, scale and shift about the centre, then a slight perspective."""
    if cap.fixed_rotation_deg is not None:
        angle = cap.fixed_rotation_deg * (1 if rng.random() < 0.5 else -1)
    else:
        angle = float(rng.uniform(-cap.rotation_deg, cap.rotation_deg))
    scale = 1 + float(rng.uniform(-cap.scale, cap.scale))
    dx, dy = rng.uniform(-cap.shift_px, cap.shift_px, 2)
    a = np.eye(3)
    a[:2] = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    a[:2, 2] += (dx, dy)
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = corners + rng.uniform(-cap.perspective_px, cap.perspective_px, (4, 2)).astype(np.float32)
    p = cv2.getPerspectiveTransform(corners, moved)
    return a @ p


def _light(gray: np.ndarray, rng: np.random.Generator, cap: Recapture) -> np.ndarray:
    h, w = gray.shape[:2]
    phi = float(rng.uniform(0, 2 * np.pi))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xs - w / 2) * np.cos(phi) + (ys - h / 2) * np.sin(phi)) / (max(w, h) / 2)
    field = (1 + rng.uniform(-cap.gain, cap.gain)) * (1 + rng.uniform(-cap.gradient, cap.gradient) * ramp)
    if gray.ndim == 3:
        field = field[..., None] * rng.uniform(0.95, 1.05, 3).astype(np.float32)  # white balance
    return gray * field + rng.uniform(-cap.offset, cap.offset)


def recapture(image: np.ndarray, rng: np.random.Generator, cap: Recapture = Recapture(),
              kind: Kind = "gray") -> tuple[np.ndarray, np.ndarray]:
    """``image`` (grey or BGR uint8) seen again: the new image (grey, binarised or BGR by ``kind``)
    and the 3x3 homography from ``image``'s coordinates to the new image's."""
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    if kind == "color" and src.ndim == 2:
        src = cv2.cvtColor(src, cv2.COLOR_GRAY2BGR)
    if kind != "color" and src.ndim == 3:
        src = cv2.cvtColor(src, cv2.COLOR_BGR2GRAY)
    m = draw_homography(rng, cap, w, h)
    bg = float(rng.uniform(*cap.background))
    out = cv2.warpPerspective(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(bg, bg, bg))
    sigma = float(rng.uniform(*cap.blur_sigma))
    if sigma > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out = _light(out, rng, cap)
    noise = float(rng.uniform(*cap.noise_sigma))
    if noise > 0:
        out = out + rng.normal(0, noise, out.shape).astype(np.float32)
    if kind == "binary":
        # a fixed threshold, as a scanner's: half-way between the dark and the bright part
        level = float(np.mean(np.percentile(out, [5, 95])))
        out = np.where(out > level, 255.0, 0.0)
    img = np.clip(out, 0, 255).astype(np.uint8)
    q = int(rng.integers(cap.jpeg_quality[0], cap.jpeg_quality[1] + 1))
    if q < 100:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img, m


def transform_box(box, m: np.ndarray) -> tuple[float, float, float, float]:
    """The bounding box of a box's corners moved by the homography ``m`` (not clipped)."""
    x1, y1, x2, y2 = box
    pts = cv2.perspectiveTransform(np.float64([[[x1, y1], [x2, y1], [x1, y2], [x2, y2]]]), m)[0]
    (bx1, by1), (bx2, by2) = np.floor(pts.min(axis=0)), np.ceil(pts.max(axis=0))
    return float(bx1), float(by1), float(bx2), float(by2)


def move_box(box, m: np.ndarray, shape: tuple[int, ...], min_visible: float = 0.5):
    """A box (x1, y1, x2, y2; x2, y2 exclusive) moved by the homography ``m`` and clipped to an image
    of ``shape``; None when less than ``min_visible`` of it is still in the image."""
    bx1, by1, bx2, by2 = transform_box(box, m)
    h, w = shape[:2]
    cx1, cy1, cx2, cy2 = max(0, bx1), max(0, by1), min(w, bx2), min(h, by2)
    full = max(bx2 - bx1, 1) * max(by2 - by1, 1)
    if cx2 <= cx1 or cy2 <= cy1 or (cx2 - cx1) * (cy2 - cy1) < min_visible * full:
        return None
    return int(cx1), int(cy1), int(cx2), int(cy2)


def point_error(estimated: np.ndarray, truth: np.ndarray, width: int, height: int,
                step: int = 16) -> tuple[float, float]:
    """Registration error of ``estimated`` against ``truth`` (both 3x3, reference -> frame): the
    median over a grid of the reference's points, and the largest at its four corners (pixels)."""
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)[None]
    corners = np.float64([[[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]]])

    def err(pts):
        return np.linalg.norm(cv2.perspectiveTransform(pts, estimated)
                              - cv2.perspectiveTransform(pts, truth), axis=2)[0]

    return float(np.median(err(grid))), float(err(corners).max())


def rescan(gray: np.ndarray, rng: np.random.Generator, edge_noise: float = 0.1) -> np.ndarray:
    """A scan of its own of a rendered board (uint8 grey): optics blur, edge noise that is smooth
    along the edge (etching, the scanner's optics: ``edge_noise`` is its amplitude relative to the
    contrast, clipped so that flat areas never flip) and a fixed threshold half-way. Two scans of
    one board differ along every edge by a fraction of a pixel to a pixel, as real scans do."""
    lo, hi = np.percentile(gray, [1, 99])
    m = (gray.astype(np.float32) - lo) / max(hi - lo, 1.0)
    m = cv2.GaussianBlur(m, (0, 0), 0.7)
    n = cv2.GaussianBlur(rng.normal(0, 1, m.shape).astype(np.float32), (0, 0), 1.5)
    n = np.clip(n * edge_noise / (n.std() + 1e-6), -0.45, 0.45)
    return np.where(m + n > 0.5, 255, 0).astype(np.uint8)
