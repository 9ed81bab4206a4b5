"""The variation model: a registered comparison with the known-good product that tolerates edge position.

Fit from one reference image (one-shot) or a reference and further known-good captures. A frame is

1. registered to the reference (a homography, coarse to fine: ``regions/registration.py``); a
   registration that cannot be trusted raises :class:`RegistrationFailed` (a NO-READ
   ``registration_failed``), never a map full of misregistration;
2. warped onto the reference grid; only the overlap of frame and reference is judged;
3. brought to the reference's light by a smooth gain and offset field (a low-order polynomial fitted
   robustly: a lighting gradient across the field is not a defect);
4. compared with the reference's local **min/max envelope**: the reference eroded and dilated over
   ``misregistration_px``, as reference-comparison AOI does. An edge that moved by less than that
   budget lies inside the envelope wherever it went, so residual misregistration, a binarisation
   threshold that moved an edge by a pixel, or a blur that differs cannot make a box; copper that is
   missing or added by more than the budget (a pin-hole, a mousebite, a spur, a short) lies outside
   it. With several known-good captures the envelope is the union of their envelopes (what the
   product really varies by), around their median.

The anomaly map is how far a pixel falls outside the envelope, in units of ``abs_tolerance`` x the
reference's contrast, so 1.0 means "just outside" whatever the product's contrast.
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
from edge_inspector.errors import RegistrationFailed, StartupError
from edge_inspector.imageio import IMAGE_SUFFIXES, read_image, to_gray
from edge_inspector.regions.base import RegionFinder
from edge_inspector.regions.boxes import BoxParams, boxes_from_map, components, summarize
from edge_inspector.regions.photometry import match_light
from edge_inspector.regions.refine import RefineFields
from edge_inspector.regions.registration import (
    Limits,
    Method,
    Registrar,
    Registration,
    align,
    box_to_frame,
    to_frame,
    valid_mask,
)


def _variation_boxes() -> BoxParams:
    # boxes padded like a person's annotation of a defect a few pixels wide (a margin of 5-15 px);
    # 3 px over the threshold make a box in a clean capture (a pin-hole of 2-3 px after the smoothing
    # and the opening), a frame whose edges jag needs `noisy_min_area_px`
    return BoxParams(margin_px=8, min_size_px=20, merge_distance_px=4, min_area_px=3)


class VariationConfig(RefineFields):
    kind: Literal["variation"] = Field("variation", description="The variation model (aligned parts).")
    reference: ConfigPath | None = Field(
        None, description="The reference image every frame is registered to. Without it, every "
        "part must bring its own reference (one-shot, as `inspect --reference` does).")
    good_images: ConfigPath | None = Field(
        None, description="A folder of further known-good captures of the product. With them the "
        "envelope learns what the product really varies by; without them the model is one-shot.")
    registration: Method = Field(Method.HOMOGRAPHY, description="How frames are registered to the "
                                 "reference: homography (rotation, shift, scale, perspective), affine, "
                                 "phase (shift only) or none. `ecc` is the former name of homography.")
    max_shift_px: float | None = Field(None, gt=0, description="Largest shift (of the field's centre) "
                                       "a trusted registration may find; default 10 % of the "
                                       "reference's longer side.")
    max_rotation_deg: float = Field(5.0, gt=0, description="Largest rotation a trusted registration "
                                    "may find.")
    max_scale: float = Field(0.05, gt=0, lt=0.5, description="Largest relative scale change a trusted "
                             "registration may find.")
    min_correlation: float = Field(0.5, ge=0, lt=1, description="A registration whose band-passed "
                                   "images correlate less than this on the reference's edges is not "
                                   "trusted (another product, a blank or foreign frame).")
    min_overlap: float = Field(0.5, gt=0, le=1, description="A registration that shows less than this "
                               "share of the reference is not trusted.")
    smooth_sigma: float = Field(0.5, ge=0, description="Gaussian smoothing (pixels) of frame and "
                                "reference before comparison: sensor noise, JPEG artefacts.")
    misregistration_px: float = Field(1.5, ge=0, le=6, description="The edge-position budget: the "
                                      "reference's local min and max over this radius bound each pixel. "
                                      "Covers residual misregistration and edges moved by a binarisation "
                                      "threshold; a defect must be larger than it to be seen.")
    abs_tolerance: float = Field(0.25, gt=0, le=1, description="Tolerance outside the envelope, as a "
                                 "fraction of the reference's contrast (2nd to 98th percentile).")
    edge_tolerance: float = Field(0.4, ge=0, le=1, description="Extra tolerance near edges, as a "
                                  "fraction of the envelope's local range (max - min): a frame sharper "
                                  "or blurrier than the reference differs there and only there. Flat "
                                  "areas (where pin-holes and spurious copper show) keep the tight band.")
    noisy_extra_px: float = Field(0.0, ge=0, le=4, description="For a frame whose edges jag more "
                                  "than the budget allows (a second scan of the board, another "
                                  "binarisation threshold), the budget grows by this much. 0: never "
                                  "(the default: a wider budget over the whole frame loses opens "
                                  "across narrow traces; such frames drop small, weak anomalies "
                                  "instead, see `noisy_min_area_px`).")
    edge_noise: float = Field(0.4, gt=0, description="A frame is that noisy when its edges' excess "
                              "(tolerance units; the median over an 8 x 8 grid of each cell's 99.9th "
                              "percentile, so that defects do not count) is above this; clean captures "
                              "show under 0.3 there, with 12 defects too, two independent scans of one "
                              "board 0.45-1.0 (edge noise 0.15) or 0.15-0.8 (0.08).")
    wide_noise: float = Field(0.8, gt=0, description="Above this edge noise (see `edge_noise`) a "
                              "frame is judged with the budget `noisy_extra_px` wider.")
    thin_px: float = Field(1.5, ge=0, le=4, description="Where the reference's copper or gaps are "
                           "thinner than 2x this (a narrow gap, a neck, an acute tip), a scan closes or "
                           "opens them at random: there the budget grows by `thin_extra_px`. 0: never.")
    thin_extra_px: float = Field(1.5, ge=0, le=6, description="The budget's growth at thin places "
                                 "of the reference (see `thin_px`).")
    noisy_min_area_px: int = Field(8, ge=1, description="In a frame whose edges jag (see "
                                   "`edge_noise`), an anomaly needs at least this many pixels over "
                                   "the threshold...")
    noisy_min_peak: float = Field(1.5, gt=0, description="... and a peak of at least this (tolerance "
                                  "units): what a pixel of independent edge jitter between two scans "
                                  "makes stays below both.")
    light_order: int = Field(2, ge=0, le=2, description="Order of the gain/offset polynomial that "
                             "matches the frame's light to the reference's (0: one gain and offset; "
                             "2: a gradient and a vignette across the field).")
    border_px: int = Field(2, ge=0, description="Pixels at the border of the frame and of the reference "
                           "that are not judged (their smoothing and interpolation are one-sided). "
                           "A defect cut by the field's edge is still a defect: only these pixels "
                           "of it go unseen.")
    opening_px: int = Field(2, ge=0, description="A grey opening of this size removes anomalies "
                            "thinner than it (an edge that moved beyond the budget leaves a line; a "
                            "defect is a blob). 0 or 1 disables it.")
    boxes: BoxParams = Field(default_factory=_variation_boxes, description="From the anomaly map to boxes.")


def _fingerprint(cfg: VariationConfig, images: list[np.ndarray]) -> str:
    h = hashlib.sha256(cfg.model_dump_json(exclude={"reference", "good_images"}).encode())
    for img in images:
        h.update(np.ascontiguousarray(img).tobytes())
    return "variation-" + h.hexdigest()[:12]


def _edge_noise(excess: np.ndarray, zone: np.ndarray, cells: int = 8) -> float:
    """How much the frame's edges jag: the median over a ``cells`` x ``cells`` grid of the field of
    each cell's 99.9th percentile of the excess near edges. Jitter between two scans lies along every
    edge, a defect in a few cells: the 99.9th percentile over the whole field was lifted by the
    defects themselves (a clean capture with 3-12 defects read 1.2-3.7, as a second scan, and lost
    its small mousebites to the blob test)."""
    # a large frame is sampled every few pixels (about 640 px across): a cell still holds thousands
    stride = max(1, round(max(excess.shape) / 640))
    excess, zone = excess[::stride, ::stride], zone[::stride, ::stride]
    h, w = excess.shape
    step = max(1, -(-max(h, w) // cells))
    per_cell = []
    for y in range(0, h, step):
        for x in range(0, w, step):
            z = zone[y:y + step, x:x + step]
            if z.sum() >= 0.05 * z.size:  # cells with edges enough to measure
                per_cell.append(float(np.percentile(excess[y:y + step, x:x + step][z], 99.9)))
    if not per_cell:
        return float(np.percentile(excess[zone], 99.9))
    return float(np.median(per_cell))


def _disk(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    ys, xs = np.mgrid[-r:r + 1, -r:r + 1]
    return (xs * xs + ys * ys <= radius * radius + 1e-6).astype(np.uint8)


class VariationModel:
    """A fitted model of one product. ``images[0]`` is the reference; the rest are known-good."""

    def __init__(self, cfg: VariationConfig, images: list[np.ndarray]) -> None:
        self.cfg = cfg
        grays = [to_gray(i) for i in images]
        self.height, self.width = grays[0].shape
        for i, g in enumerate(grays[1:], 1):
            if g.shape != grays[0].shape:
                raise StartupError(f"known-good image {i} is {g.shape[1]}x{g.shape[0]}, "
                                   f"the reference is {self.width}x{self.height}")
        max_shift = cfg.max_shift_px or 0.1 * max(self.width, self.height)
        limits = Limits(max_shift_px=max_shift, max_rotation_deg=cfg.max_rotation_deg,
                        max_scale=cfg.max_scale, min_correlation=cfg.min_correlation,
                        min_overlap=cfg.min_overlap)
        self.registrar = Registrar(grays[0], cfg.registration, limits)
        ref = self._smooth(grays[0])
        # where the light is learnt: away from the reference's edges
        near = _disk(cfg.misregistration_px + 1)
        rng_ = cv2.dilate(ref, near) - cv2.erode(ref, near)
        self._flat = (rng_ < 0.1 * max(float(np.percentile(ref, 98) - np.percentile(ref, 2)), 1.0)).astype(np.uint8)
        self._lo, self._hi = np.percentile(ref, [2, 98])
        self.contrast = float(max(self._hi - self._lo, 1.0))
        stack = [ref]
        for i, g in enumerate(grays[1:], 1):
            reg = self.registrar.register(g)
            if not reg.trusted:
                raise StartupError(f"known-good image {i} does not register to the reference: {reg.problem}")
            x, valid = self._onto_reference(self._smooth(g), reg, ref)
            stack.append(np.where(valid > 0, x, ref))  # outside its view, a good capture says nothing
        self.reference = np.median(np.stack(stack), axis=0).astype(np.float32) if len(stack) > 2 else ref
        self.tolerance = cfg.abs_tolerance * self.contrast
        # the envelope over the budget, and a wider one for scans whose edges jag more
        budgets = [cfg.misregistration_px]
        if cfg.noisy_extra_px > 0:
            budgets.append(cfg.misregistration_px + cfg.noisy_extra_px)
        self.envelopes = [(r, *self._envelope(stack, r)) for r in budgets]
        # whether a frame's edges jag is a property of the frame against one scan of the product, not
        # of how many known-good scans widened the envelope: judged against the reference's own
        self._noise_envelope = (self.envelopes[0][1:] if len(stack) == 1
                                else self._envelope([self.reference], cfg.misregistration_px))
        # a clean capture (edges that do not jag) is judged without the thin-place growth: only a
        # second scan closes or opens the reference's thin places at random, and at a thin trace the
        # growth hid a mousebite on a clean board
        self._clean = (self._envelope(stack, cfg.misregistration_px, thin_places=False)
                       if cfg.thin_px > 0 and cfg.thin_extra_px > 0 else None)
        lower, upper = self.envelopes[0][1:]
        # where edges are, and the 2 px beyond the envelope where an edge that jags more would show
        edges = ((upper - lower) > 0.5 * self.contrast).astype(np.uint8)
        self._edge_zone = cv2.dilate(edges, _disk(cfg.misregistration_px + 2)) > 0
        self.samples = len(grays)
        self.fingerprint = _fingerprint(cfg, images)

    def _envelope(self, stack: list[np.ndarray], radius: float, thin_places: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The union of the images' local min/max over ``radius``, widened at edges (and at the
        reference's thin places, unless ``thin_places`` is False)."""
        disk = _disk(radius)
        lower = np.minimum.reduce([cv2.erode(x, disk) for x in stack])
        upper = np.maximum.reduce([cv2.dilate(x, disk) for x in stack])
        t, extra = self.cfg.thin_px, self.cfg.thin_extra_px
        if thin_places and t > 0 and extra > 0:
            k = _disk(t)
            # thin places: what a closing fills (narrow gaps) or an opening removes (necks, tips)
            thin = np.zeros(stack[0].shape, bool)
            for x in stack:
                thin |= cv2.morphologyEx(x, cv2.MORPH_CLOSE, k) - x > 0.3 * self.contrast
                thin |= x - cv2.morphologyEx(x, cv2.MORPH_OPEN, k) > 0.3 * self.contrast
            zone = cv2.dilate(thin.astype(np.uint8), _disk(radius + 1)) > 0
            wide = _disk(radius + extra)
            lower = np.where(zone, np.minimum.reduce([cv2.erode(x, wide) for x in stack]), lower)
            upper = np.where(zone, np.maximum.reduce([cv2.dilate(x, wide) for x in stack]), upper)
        slack = self.cfg.edge_tolerance * (upper - lower)
        return lower - slack, upper + slack

    def _smooth(self, gray: np.ndarray) -> np.ndarray:
        g = gray.astype(np.float32)
        s = self.cfg.smooth_sigma
        return cv2.GaussianBlur(g, (0, 0), s) if s > 0 else g

    def _onto_reference(self, g: np.ndarray, reg: Registration, ref: np.ndarray):
        size = (self.width, self.height)
        valid = valid_mask(reg, g.shape, self.cfg.border_px)
        b = self.cfg.border_px
        if b:  # the reference's own border is no better than the frame's
            valid[:b], valid[-b:], valid[:, :b], valid[:, -b:] = 0, 0, 0, 0
        x = align(g, reg, size)
        flat = valid & self._flat
        return match_light(x, ref, flat, self.cfg.light_order), valid

    def register(self, gray: np.ndarray) -> Registration:
        if gray.shape != (self.height, self.width):
            raise ValueError(f"the frame is {gray.shape[1]}x{gray.shape[0]}, the reference is "
                             f"{self.width}x{self.height}")
        reg = self.registrar.register(gray)
        if not reg.trusted:
            figures = reg.to_json()
            raise RegistrationFailed(f"registration cannot be trusted: {reg.problem} "
                                     f"(correlation {reg.correlation:.2f}, inliers {reg.inliers:.2f}, "
                                     f"overlap {reg.overlap:.2f})", figures)
        return reg

    def anomaly_map(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, Registration, dict]:
        """The map on the reference grid, the valid mask, the registration, and the edge figures
        (the edges' noise and the budget it chose)."""
        gray = to_gray(image)
        reg = self.register(gray)
        x, valid = self._onto_reference(self._smooth(gray), reg, self.reference)
        budget, lower, upper = self.envelopes[0]
        a = self._excess(x, lower, upper)
        noise = 0.0
        zone = self._edge_zone & (valid > 0)
        if zone.any():
            # a second scan whose edges jag more than the budget (another scanner threshold, etching)
            # lifts the edges' excess as a whole, where a defect is a few pixels of it: in such a
            # frame slivers are dropped (and, with noisy_extra_px, the wider envelope judges it)
            own = a if self.samples == 1 else self._excess(x, *self._noise_envelope)
            noise = _edge_noise(own, zone)
            if len(self.envelopes) > 1 and noise > self.cfg.wide_noise:
                budget, lower, upper = self.envelopes[1]
                a = self._excess(x, lower, upper)
        if noise <= self.cfg.edge_noise and self._clean is not None and budget == self.envelopes[0][0]:
            a = self._excess(x, *self._clean)
        if self.cfg.opening_px > 1:
            k = self.cfg.opening_px
            a = cv2.morphologyEx(a, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        a[valid == 0] = 0
        if noise > self.cfg.edge_noise:
            self._drop_jitter(a)
        return a, valid, reg, {"edge_noise": round(noise, 3), "budget_px": budget}

    def _drop_jitter(self, a: np.ndarray) -> None:
        """In a frame whose edges jag (a second scan of the board), the anomalies (grouped as boxes
        group them) that are smaller than ``noisy_min_area_px`` or weaker than ``noisy_min_peak``
        are zeroed: independent edge jitter of about a pixel in both scans leaves slivers of a few
        pixels just over the threshold, where a pin-hole or a mousebite a few pixels wide leaves a
        blob of full contrast."""
        found = components(a, self.cfg.boxes)
        if found is None:
            return
        _, labels, mask, area, peak = found
        weak = (area < self.cfg.noisy_min_area_px) | (peak < self.cfg.noisy_min_peak)
        weak[0] = False
        if weak.any():
            a[weak[labels] & mask] = 0

    def _excess(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        a = np.maximum(x - upper, lower - x)
        np.maximum(a, 0, out=a)
        a *= 1.0 / self.tolerance
        return a

    def find(self, image: np.ndarray) -> Regions:
        a, valid, reg, edge = self.anomaly_map(image)
        params = self.cfg.boxes
        boxes = boxes_from_map(a, params, to_frame_box=lambda b: box_to_frame(b, reg),
                               frame_shape=image.shape[:2])
        summary, score = summarize(a, valid, boxes, params.threshold)
        return Regions(score=score, boxes=tuple(boxes), summary=summary, model=self.fingerprint,
                       anomaly_map=to_frame(a, reg, (image.shape[1], image.shape[0])),
                       registration={**reg.to_json(), **edge})


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
