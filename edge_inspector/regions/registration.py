"""Register a frame to the reference: phase correlation for the shift, ECC for a small rotation.

The result is a 2x3 affine ``warp`` in OpenCV's ECC convention: it maps reference coordinates to
frame coordinates, so ``cv2.warpAffine(frame, warp, size, flags=WARP_INVERSE_MAP)`` brings the frame
onto the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np


class Method(StrEnum):
    NONE = "none"
    PHASE = "phase"  # translation only, sub-pixel
    ECC = "ecc"  # phase correlation, then a Euclidean (shift + rotation) ECC refinement


@dataclass(frozen=True, slots=True)
class Registration:
    warp: np.ndarray  # 2x3 float32, reference -> frame
    converged: bool

    @property
    def dx(self) -> float:
        return float(self.warp[0, 2])

    @property
    def dy(self) -> float:
        return float(self.warp[1, 2])

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.warp[1, 0], self.warp[0, 0])))

    def to_json(self) -> dict[str, float]:
        return {"dx": round(self.dx, 3), "dy": round(self.dy, 3), "angle_deg": round(self.angle_deg, 4),
                "converged": float(self.converged)}


IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float32)


class Registrar:
    """Registers frames to one reference. Precomputes what it can from the reference."""

    def __init__(self, reference: np.ndarray, method: Method = Method.ECC, max_shift_px: float = 40.0,
                 ecc_iterations: int = 30, fine_iterations: int = 15) -> None:
        self.method = Method(method)
        self.max_shift_px = max_shift_px
        self.ecc_iterations = ecc_iterations
        # frames over ~1 megapixel are registered coarse to fine
        self.ecc_scale = 1.0 if max(reference.shape) <= 1024 else 512 / max(reference.shape)
        self.fine_iterations = fine_iterations
        self.reference = reference.astype(np.float32)
        h, w = reference.shape
        self._window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        self._ref_small = self._shrink(self.reference)

    def _shrink(self, img: np.ndarray) -> np.ndarray:
        if self.ecc_scale >= 1:
            return img
        return cv2.resize(img, None, fx=self.ecc_scale, fy=self.ecc_scale, interpolation=cv2.INTER_AREA)

    def register(self, frame: np.ndarray) -> Registration:
        if self.method is Method.NONE:
            return Registration(IDENTITY.copy(), True)
        frame = frame.astype(np.float32)
        # OpenCV 5's phaseCorrelate windows its first input in place: give it a copy
        (sx, sy), response = cv2.phaseCorrelate(self.reference.copy(), frame.copy(), self._window)
        if not np.isfinite(sx) or abs(sx) > self.max_shift_px or abs(sy) > self.max_shift_px:
            sx, sy = 0.0, 0.0
        warp = np.array([[1, 0, sx], [0, 1, sy]], np.float32)
        if self.method is Method.PHASE:
            return Registration(warp, response > 0.05)
        return self._ecc(frame, warp)

    def _ecc(self, frame: np.ndarray, warp: np.ndarray) -> Registration:
        """ECC from the phase-correlation shift; on large frames, coarse first, then a few full-size
        iterations."""
        init = warp
        try:
            if self.ecc_scale < 1:
                init = warp.copy()
                init[:, 2] *= self.ecc_scale
                init = self._ecc_step(self._ref_small, self._shrink(frame), init, self.ecc_iterations)
                init[:, 2] /= self.ecc_scale
            refined = self._ecc_step(self.reference, frame, init, self.fine_iterations)
        except cv2.error:
            return Registration(warp, False)  # keep the phase-correlation shift
        if np.abs(refined[:, 2] - warp[:, 2]).max() > 3.0 or abs(refined[1, 0]) > 0.035:
            return Registration(warp, False)  # ECC wandered off (> 3 px, > 2 degrees): distrust it
        return Registration(refined.astype(np.float32), True)

    @staticmethod
    def _ecc_step(ref: np.ndarray, frame: np.ndarray, init: np.ndarray, iterations: int) -> np.ndarray:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-4)
        _, warp = cv2.findTransformECC(ref, frame, init.astype(np.float32), cv2.MOTION_EUCLIDEAN,
                                       criteria, None, 1)
        return warp


def align(frame: np.ndarray, reg: Registration, size: tuple[int, int]) -> np.ndarray:
    """Warp ``frame`` onto the reference grid (``size`` is width, height)."""
    return cv2.warpAffine(frame, reg.warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def to_frame(image: np.ndarray, reg: Registration, size: tuple[int, int]) -> np.ndarray:
    """Warp an image on the reference grid (an anomaly map) back onto the frame's grid."""
    return cv2.warpAffine(image, reg.warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def box_to_frame(box: tuple[float, float, float, float], reg: Registration) -> tuple[float, ...]:
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], np.float32) @ reg.warp.T
    return (float(corners[:, 0].min()), float(corners[:, 1].min()),
            float(corners[:, 0].max()), float(corners[:, 1].max()))
