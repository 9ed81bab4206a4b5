"""The texture model: local statistics of known-good surfaces, for parts that are not aligned.

Machined metal, castings, fabric: the known-good appearance is a texture, not a fixed picture, so the
model needs no registration. Each frame is brought to a working scale and described, on a grid of
patches, by hand-made multi-scale features (no downloaded weights): oriented gradient energies and a
difference of Gaussians at a few scales (a small filter bank), the patch's brightness, contrast,
colour and surrounding brightness. Features are standardised with the known-good statistics; a
patch's anomaly is its distance to the nearest known-good patch (a memory bank, ``knn``) or its
Mahalanobis distance to one Gaussian of the good patches (``gaussian``).

The distance is divided by a tolerance measured at fit time on held-out known-good patches (the
known-good images split in two folds, each scored against a bank of the other), so that 1.0 means
"as unusual as the rarest good patches" whatever the product. The map is then boxed like the
variation model's.

A model can learn from the known-good *areas* of images: a mask per image marks what to leave out
(a defect, or anything not certified good).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import structlog
from pydantic import Field

from edge_inspector.config_base import ConfigPath
from edge_inspector.envelope import Frame, Regions
from edge_inspector.errors import StartupError
from edge_inspector.imageio import IMAGE_SUFFIXES, read_image
from edge_inspector.regions.base import RegionFinder
from edge_inspector.regions.boxes import BoxParams, boxes_from_map, summarize
from edge_inspector.regions.patches import Scorer, patch_features
from edge_inspector.regions.refine import RefineFields

log = structlog.get_logger(__name__)


def _texture_boxes() -> BoxParams:
    return BoxParams(min_area_px=24, merge_distance_px=4, margin_px=1, min_size_px=8)


class TextureConfig(RefineFields):
    kind: Literal["texture"] = Field("texture", description="The texture model (unaligned parts, surfaces).")
    reference: ConfigPath | None = Field(
        None, description="A known-good image of the product, learnt from (alone: one-shot). Without "
        "it and good_images, every part must bring its own reference (`inspect --reference`).")
    good_images: ConfigPath | None = Field(
        None, description="A folder of further known-good images. A file NAME.mask.png beside NAME.png marks "
        "areas not to learn from (non-zero pixels: a defect, or anything not certified good).")
    model: Literal["knn", "gaussian"] = Field("knn", description="knn: distance to the nearest good "
                                              "patch (multi-modal surfaces); gaussian: Mahalanobis "
                                              "distance to one Gaussian of the good patches.")
    scale: float = Field(0.5, gt=0, le=1, description="Working scale: frames are resized by this factor "
                         "first. Box sizes and areas are in working pixels.")
    max_side_px: int = Field(1024, ge=64, description="The working image's longer side is at most this "
                             "(bounds the cost on large frames).")
    patch_px: int = Field(8, ge=2, le=64, description="Patch size (working pixels): features are pooled "
                          "over a Gaussian window of this width.")
    stride_px: int = Field(4, ge=1, le=32, description="Distance between patch centres (working pixels).")
    scales: tuple[float, ...] = Field((1.0, 2.0, 4.0), min_length=1, description="Filter-bank scales "
                                      "(Gaussian sigma, working pixels).")
    color: bool = Field(True, description="Use the chroma of colour frames (Lab a, b) as features.")
    blob_features: bool = Field(True, description="Add spot features per scale (the weakest oriented "
                                "energy, the Hessian determinant, the dark-spot Laplacian, each the "
                                "strongest in the patch): pits and dents on grooved or brushed surfaces.")
    rotation_invariant: bool = Field(False, description="Sort the oriented energies per scale, so that "
                                     "a rotated texture looks the same (for parts that turn).")
    bank_size: int = Field(4096, ge=64, description="Good patches kept in the knn memory bank.")
    outlier_fraction: float = Field(0.0, ge=0, lt=0.5, description="The rarest fraction of the "
                                    "known-good patches (farthest from the others) is left out of the "
                                    "bank: likely unlabelled defects in the known-good images.")
    calibration_quantile: float = Field(0.999, gt=0.5, lt=1.0, description="The tolerance is this "
                                        "quantile of held-out good patches' distances.")
    sensitivity: float = Field(1.0, gt=0, description="Divides the tolerance: above 1 flags more.")
    box_level: float = Field(0.7, ge=0, lt=1, description="A box covers the part of its blob over this "
                             "fraction of the blob's peak (never under the threshold): the anomaly, not "
                             "the halo that patch pooling spreads around it. 0: the whole blob.")
    smooth_cells: float = Field(1.0, ge=0, description="Gaussian smoothing of the patch map (in patches).")
    border_px: int = Field(10, ge=0, description="Working pixels at the border that are not judged.")
    seed: int = Field(0, description="Seed of the bank's random subsampling (reproducible fits).")
    boxes: BoxParams = Field(default_factory=_texture_boxes, description="From the anomaly map to boxes "
                             "(sizes and areas in working pixels).")


def _good_cells(grid_shape: tuple[int, int], scale: float, mask: np.ndarray | None,
                cfg: TextureConfig) -> np.ndarray:
    """Which patches of the grid touch no masked (not-known-good) pixel."""
    if mask is None:
        return np.ones(grid_shape, bool)
    m = (mask > 0).astype(np.uint8)
    m = cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale < 1 else m
    r = cfg.patch_px + 1
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    st = cfg.stride_px
    return m[st // 2::st, st // 2::st][: grid_shape[0], : grid_shape[1]] == 0


class TextureModel:
    """A fitted texture model of one product."""

    def __init__(self, cfg: TextureConfig, images: list[np.ndarray],
                 masks: list[np.ndarray | None] | None = None) -> None:
        if not images:
            raise StartupError("the texture model needs at least one known-good image")
        self.cfg = cfg
        masks = masks if masks is not None else [None] * len(images)
        grids = []
        for img, mask in zip(images, masks):
            if mask is not None and mask.shape[:2] != img.shape[:2]:
                raise StartupError(f"a mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                                   f"{img.shape[1]}x{img.shape[0]}")
            feats, s = patch_features(img, cfg)
            grids.append((feats, _good_cells(feats.shape[:2], s, mask, cfg)))
        good = np.concatenate([f[g] for f, g in grids])
        if len(good) < 16:
            raise StartupError(f"the texture model found only {len(good)} known-good patches to learn from")
        self.mu = good.mean(0)
        self.sd = good.std(0) + 1e-3
        rng = np.random.default_rng(cfg.seed)
        self.tolerance = self._calibrate(grids, rng)
        self.scorer = Scorer(cfg, good, rng, self.mu, self.sd)
        self.samples, self.patches = len(images), len(good)
        h = hashlib.sha256(cfg.model_dump_json(exclude={"good_images", "reference", "sam_dir"}).encode())
        for img in images:
            h.update(np.ascontiguousarray(img).tobytes())
        self.fingerprint = "texture-" + h.hexdigest()[:12]
        log.info("texture_model_fitted", images=len(images), patches=len(good),
                 tolerance=round(self.tolerance, 4), model=cfg.model)

    def _cells(self, scorer: Scorer, feats: np.ndarray) -> np.ndarray:
        """The smoothed patch map (raw distances) of one grid of features."""
        rows, cols = feats.shape[:2]
        cells = scorer(feats.reshape(-1, feats.shape[-1])).reshape(rows, cols)
        if self.cfg.smooth_cells > 0:
            cells = cv2.GaussianBlur(cells, (0, 0), self.cfg.smooth_cells)
        return cells

    def _calibrate(self, grids: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> float:
        """The ``calibration_quantile`` of held-out good patches' smoothed map values. Two folds of
        images (up to five), each scored against a model of the others; one image: its left and right
        halves."""
        if len(grids) == 1:
            feats, good = grids[0]
            mid = feats.shape[1] // 2
            grids = [(feats[:, :mid], good[:, :mid]), (feats[:, mid:], good[:, mid:])]
        # k folds (interleaved), each scored against a model of all the others: with two folds a
        # kind of image that is rare in the set (another magnification) can land all in one fold
        # and inflate the tolerance (measured on BSData: 2x)
        k = min(len(grids), 5)
        values = []
        for i in range(k):
            held = grids[i::k]
            other = [g for j, g in enumerate(grids) if j % k != i]
            rows = np.concatenate([f[g] for f, g in other])
            if len(rows) < 16:
                continue
            scorer = Scorer(self.cfg, rows, rng, self.mu, self.sd)
            step = max(1, len(held) // 4)  # at most 4 held-out images per fold: bounded fit time
            for feats, good in held[::step]:
                cells = self._cells(scorer, feats)
                inner = good.copy()
                inner[:1], inner[-1:], inner[:, :1], inner[:, -1:] = False, False, False, False
                values.append(cells[inner])
        v = np.concatenate(values) if values else np.zeros(0, np.float32)
        if v.size == 0:
            raise StartupError("the texture model has too few known-good patches to calibrate its tolerance")
        return max(float(np.quantile(v, self.cfg.calibration_quantile)), 1e-3) / self.cfg.sensitivity

    def anomaly_map(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The map at working scale (in tolerance units) and the working scale."""
        if image is None or image.size == 0 or min(image.shape[:2]) < 8:
            raise ValueError(f"the frame is too small for the texture model: {image.shape[:2]}")
        feats, s = patch_features(image, self.cfg)
        rows, cols = feats.shape[:2]
        cells = self._cells(self.scorer, feats) / self.tolerance
        h, w = int(round(image.shape[0] * s)), int(round(image.shape[1] * s))
        st = self.cfg.stride_px
        # cell (i, j) is centred on pixel (st//2 + st*j, st//2 + st*i): resize onto that grid
        a = cv2.resize(cells, (cols * st, rows * st), interpolation=cv2.INTER_LINEAR)
        a = cv2.copyMakeBorder(a, 0, max(0, h - a.shape[0]), 0, max(0, w - a.shape[1]),
                               cv2.BORDER_REPLICATE)[:h, :w]
        b = self.cfg.border_px
        if b:
            a[:b], a[-b:], a[:, :b], a[:, -b:] = 0, 0, 0, 0
        return np.ascontiguousarray(a, np.float32), s

    def find(self, image: np.ndarray) -> Regions:
        a, s = self.anomaly_map(image)
        p = self.cfg.boxes
        frame_shape = image.shape[:2]

        def to_frame(b: tuple[float, float, float, float]) -> tuple[float, ...]:
            return tuple(v / s for v in b)

        boxes = boxes_from_map(_core(a, p.threshold, self.cfg.box_level), p, to_frame, frame_shape)
        summary, score = summarize(a, None, boxes, p.threshold)
        full = cv2.resize(a, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR) if s < 1 else a
        return Regions(score=score, boxes=tuple(boxes), summary=summary, model=self.fingerprint,
                       anomaly_map=full)


def _core(a: np.ndarray, threshold: float, level: float) -> np.ndarray:
    """The map with each blob over the threshold cut to its core (over ``level`` x its peak): a
    strong anomaly's box fits the anomaly, not the halo that patch pooling spreads around it."""
    over = a > threshold
    if level <= 0 or not over.any():
        return a
    n, labels = cv2.connectedComponents(over.astype(np.uint8), connectivity=8)
    peak = np.zeros(n, np.float32)
    np.maximum.at(peak, labels[over], a[over])
    keep = over & (a >= level * peak[labels])
    return np.where(keep, a, 0).astype(np.float32)


def read_with_mask(path: Path, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An image and its optional ``NAME.mask.png`` beside it. Raises StartupError."""
    path = Path(path)
    img = read_image(path, what=what)
    mask_path = path.with_name(path.stem + ".mask.png")
    if not mask_path.exists():
        return img, None
    mask = read_image(mask_path, what="mask")
    mask = mask if mask.ndim == 2 else mask.max(axis=2)
    if mask.shape != img.shape[:2]:
        raise StartupError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}, its image is "
                           f"{img.shape[1]}x{img.shape[0]}")
    return img, mask


def load_good_images(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The images of a folder and their optional masks. Raises StartupError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StartupError(f"regions.good_images: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(".mask"))
    if not files:
        raise StartupError(f"regions.good_images: no images in {folder}")
    pairs = [read_with_mask(p, "known-good image") for p in files]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class TextureFinder(RegionFinder):
    """The regions stage with a texture model. A per-part reference (one-shot) is learnt from as a
    known-good image, cached for the next parts with the same reference."""

    def __init__(self, cfg: TextureConfig, images: list[np.ndarray] | None = None,
                 masks: list[np.ndarray | None] | None = None) -> None:
        self.cfg = cfg
        self.threshold = cfg.boxes.threshold
        if images is None:
            images, masks = [], []
            if cfg.reference is not None:
                img, mask = read_with_mask(cfg.reference, "reference image")
                images, masks = [img], [mask]
            if cfg.good_images is not None:
                more, more_masks = load_good_images(cfg.good_images)
                images, masks = images + more, masks + more_masks
        self.model = TextureModel(cfg, images, masks) if images else None
        self.fingerprint = self.model.fingerprint if self.model else "texture-unfitted"
        self._one_shot: dict[bytes, TextureModel] = {}

    def _model_for(self, frame: Frame) -> TextureModel:
        if self.model is not None:
            return self.model
        if frame.reference is None:
            raise ValueError("no known-good images: configure regions.good_images or give the part a "
                             "reference")
        key = hashlib.sha1(np.ascontiguousarray(frame.reference).tobytes()).digest()
        if key not in self._one_shot:
            if len(self._one_shot) >= 4:
                self._one_shot.pop(next(iter(self._one_shot)))
            self._one_shot[key] = TextureModel(self.cfg, [frame.reference])
        return self._one_shot[key]

    def find(self, frame: Frame) -> Regions:
        assert frame.image is not None
        return self._model_for(frame).find(frame.image)

    def describe(self) -> str:
        return json.dumps({"kind": "texture", "samples": self.model.samples if self.model else 0})
