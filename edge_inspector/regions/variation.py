"""The variation model: per-pixel mean and spread of the known-good product, after registration.

Fit from known-good images of the product or from one reference image (one-shot). A frame is
registered to the reference, brought to its brightness, and compared with a tolerance band around the
model: the band is the per-pixel mean +/- ``std_factor`` spreads, widened by a grey-level dilation and
erosion of ``envelope_radius_px`` (edges and small misregistration), plus an absolute tolerance in
units of the reference's contrast. The anomaly map is how far a pixel falls outside the band, in
tolerance units, so that 1.0 means "just outside" whatever the product's contrast.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from edge_inspector.config_base import ConfigPath
from edge_inspector.envelope import Frame, Regions
from edge_inspector.errors import StartupError
from edge_inspector.imageio import IMAGE_SUFFIXES, read_image, to_gray
from edge_inspector.regions.base import RegionFinder
from edge_inspector.regions.boxes import BoxParams, boxes_from_map, summarize
from edge_inspector.regions.refine import RefineFields
from edge_inspector.regions.registration import Method, Registrar, align, box_to_frame, to_frame


class VariationConfig(RefineFields):
    kind: Literal["variation"] = Field("variation", description="The variation model (aligned parts).")
    reference: ConfigPath | None = Field(
        None, description="The reference image every frame is registered to. Without it, every "
        "part must bring its own reference (one-shot, as `inspect --reference` does).")
    good_images: ConfigPath | None = Field(
        None, description="A folder of further known-good images of the product. With it the model "
        "learns each pixel's spread; without it the model is one-shot from the reference.")
    registration: Method = Field(Method.ECC, description="How frames are registered to the reference: "
                                 "ecc (shift + rotation), phase (shift only) or none.")
    max_shift_px: float = Field(40.0, gt=0, description="Largest shift registration may find.")
    smooth_sigma: float = Field(0.7, ge=0, description="Gaussian smoothing (pixels) before comparison; "
                                "suppresses sensor noise and JPEG artefacts.")
    envelope_radius_px: int = Field(0, ge=0, le=8, description="Tolerance for edges and residual "
                                    "misregistration: the band is dilated/eroded by this radius.")
    abs_tolerance: float = Field(0.15, gt=0, le=1, description="Absolute tolerance as a fraction of the "
                                 "reference's contrast (2nd to 98th percentile).")
    edge_shift_px: float = Field(1.0, ge=0, description="Residual misregistration (pixels) tolerated "
                                 "on top of the envelope: the band widens by the reference's gradient "
                                 "times this shift, so edges tolerate small shifts and flat areas do not.")
    std_factor: float = Field(3.0, ge=0, description="How many per-pixel spreads the band allows "
                              "(used when known-good images are given).")
    border_px: int = Field(4, ge=0, description="Pixels at the frame border that are not judged.")
    opening_px: int = Field(3, ge=0, description="A grey opening of this size removes anomalies "
                            "thinner than it (residual misregistration leaves 1-pixel lines along "
                            "edges; a defect is a blob). 0 disables it.")
    boxes: BoxParams = Field(default_factory=BoxParams, description="From the anomaly map to boxes.")


def _fingerprint(cfg: VariationConfig, images: list[np.ndarray]) -> str:
    h = hashlib.sha256(cfg.model_dump_json(exclude={"reference", "good_images"}).encode())
    for img in images:
        h.update(np.ascontiguousarray(img).tobytes())
    return "variation-" + h.hexdigest()[:12]


class VariationModel:
    """A fitted model of one product. ``images[0]`` is the reference; the rest are known-good."""

    def __init__(self, cfg: VariationConfig, images: list[np.ndarray]) -> None:
        self.cfg = cfg
        grays = [to_gray(i) for i in images]
        ref = self._smooth(grays[0])
        self.height, self.width = ref.shape
        for i, g in enumerate(grays[1:], 1):
            if g.shape != ref.shape:
                raise StartupError(f"known-good image {i} is {g.shape[1]}x{g.shape[0]}, "
                                   f"the reference is {self.width}x{self.height}")
        self.registrar = Registrar(ref, cfg.registration, cfg.max_shift_px)
        self._lo, self._hi = np.percentile(ref, [2, 98])
        stack = [ref] + [self._normalize(align(s, self.registrar.register(s), (self.width, self.height)))
                         for s in map(self._smooth, grays[1:])]
        arr = np.stack(stack).astype(np.float32)
        mean, std = arr.mean(axis=0), arr.std(axis=0)
        r = cfg.envelope_radius_px
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        self.upper = cv2.dilate(mean + cfg.std_factor * std, kernel)
        self.lower = cv2.erode(mean - cfg.std_factor * std, kernel)
        self.tolerance = float(cfg.abs_tolerance * max(self._hi - self._lo, 1.0))
        if cfg.edge_shift_px > 0:
            grad = cv2.magnitude(cv2.Sobel(mean, cv2.CV_32F, 1, 0, ksize=3),
                                 cv2.Sobel(mean, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
            slack = cv2.dilate(grad * cfg.edge_shift_px, kernel)
            self.upper = self.upper + slack
            self.lower = self.lower - slack
        self.samples = len(grays)
        self.fingerprint = _fingerprint(cfg, images)

    def _smooth(self, gray: np.ndarray) -> np.ndarray:
        g = gray.astype(np.float32)
        s = self.cfg.smooth_sigma
        return cv2.GaussianBlur(g, (0, 0), s) if s > 0 else g

    def _normalize(self, img: np.ndarray) -> np.ndarray:
        """Map the frame's grey levels onto the reference's (robust gain and offset)."""
        lo, hi = np.percentile(img, [2, 98])
        if hi - lo < 1e-3:
            return img
        return (img - lo) * ((self._hi - self._lo) / (hi - lo)) + self._lo

    def anomaly_map(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
        """The map on the reference grid, the valid mask, and the registration."""
        gray = to_gray(image)
        if gray.shape != (self.height, self.width):
            raise ValueError(f"the frame is {gray.shape[1]}x{gray.shape[0]}, the reference is "
                             f"{self.width}x{self.height}")
        g = self._smooth(gray)
        reg = self.registrar.register(g)
        size = (self.width, self.height)
        x = self._normalize(align(g, reg, size))
        a = np.maximum(x - self.upper, self.lower - x)
        np.maximum(a, 0, out=a)
        a *= 1.0 / self.tolerance
        if self.cfg.opening_px > 1:
            k = self.cfg.opening_px
            a = cv2.morphologyEx(a, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        valid = cv2.warpAffine(np.ones_like(g, np.uint8), reg.warp, size,
                               flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
        b = self.cfg.border_px
        if b:
            valid[:b], valid[-b:], valid[:, :b], valid[:, -b:] = 0, 0, 0, 0
            valid = cv2.erode(valid, np.ones((3, 3), np.uint8), iterations=max(1, b // 2))
        a[valid == 0] = 0
        return a, valid, reg

    def find(self, image: np.ndarray) -> Regions:
        a, valid, reg = self.anomaly_map(image)
        params = self.cfg.boxes
        boxes = boxes_from_map(a, params, to_frame_box=lambda b: box_to_frame(b, reg),
                               frame_shape=image.shape[:2])
        summary, score = summarize(a, valid, boxes, params.threshold)
        return Regions(score=score, boxes=tuple(boxes), summary=summary, model=self.fingerprint,
                       anomaly_map=to_frame(a, reg, (image.shape[1], image.shape[0])),
                       registration=reg.to_json())


def load_good_images(cfg: VariationConfig) -> list[np.ndarray]:
    """The reference and the known-good images named by the config. Raises StartupError."""
    if cfg.reference is None:
        return []
    images = [read_image(cfg.reference, what="reference image")]
    if cfg.good_images is not None:
        folder = Path(cfg.good_images)
        if not folder.is_dir():
            raise StartupError(f"regions.good_images: {folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise StartupError(f"regions.good_images: no images in {folder}")
        images += [read_image(p, what="known-good image") for p in files]
    return images


class VariationFinder(RegionFinder):
    """The regions stage with a variation model; one-shot models for per-part references."""

    def __init__(self, cfg: VariationConfig, images: list[np.ndarray] | None = None) -> None:
        self.cfg = cfg
        self.threshold = cfg.boxes.threshold
        images = load_good_images(cfg) if images is None else images
        self.model = VariationModel(cfg, images) if images else None
        self.fingerprint = self.model.fingerprint if self.model else _fingerprint(cfg, [])
        self._one_shot: OrderedDict[bytes, VariationModel] = OrderedDict()

    def _model_for(self, frame: Frame) -> VariationModel:
        if frame.reference is None:
            if self.model is None:
                raise ValueError("no reference: configure regions.reference or give the part one")
            return self.model
        key = hashlib.sha1(np.ascontiguousarray(frame.reference).tobytes()).digest()
        model = self._one_shot.get(key)
        if model is None:
            model = VariationModel(self.cfg, [frame.reference])
            self._one_shot[key] = model
            if len(self._one_shot) > 8:
                self._one_shot.popitem(last=False)
        return model

    def find(self, frame: Frame) -> Regions:
        assert frame.image is not None
        return self._model_for(frame).find(frame.image)

    def describe(self) -> str:
        return json.dumps({"kind": "variation", "samples": self.model.samples if self.model else 0})
