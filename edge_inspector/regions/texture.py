"""The texture model: local statistics of known-good surfaces, for parts that are not aligned.

Machined metal, castings, fabric: the known-good appearance is a texture, not a fixed picture. Each
frame is brought to a working scale and described, on a grid of patches, by hand-made multi-scale
features (no downloaded weights): oriented gradient energies, differences of Gaussians and spot
features at a few scales, the patch's brightness, contrast, colour and surrounding brightness
(``patches.py``), standardised with the known-good statistics.

A patch is anomalous when nothing explains it. Up to three explainers each measure a distance map:
``bank``, the nearest known-good patch anywhere (or one Gaussian of them); ``position``, the
known-good images' patches at the same place, when they share the frame's size (aligned views: an
edge or a reflection that is always there); ``self``, the frame's own surface away from the patch
(wear, soiling and grooves repeat along a surface, a pit does not). Each map is divided by its median
over the frame (its own units, whatever the light or magnification); the anomaly is the smallest.

The threshold is calibrated on held-out known-good images (folds, each scored against a model of
the others): a Gumbel fitted to the lower half of their per-image maxima gives the value a good frame
exceeds with probability ``false_box_rate`` (known-good areas that hold wear or unlabelled defects
move the upper tail, not the fit); the folds are dealt ``calibration_rounds`` times, each time in
another order, and the threshold is the median of the rounds'. The map is divided by it, so 1.0 is
the threshold. Boxes are the regions around the map's peaks, and separate dark spots beside a
compact one at the frame's own resolution (``texture_boxes.py``).

A model can learn from the known-good *areas* of images: a mask per image marks what to leave out
(a defect, or anything not certified good).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import structlog

from edge_inspector.envelope import Frame, Regions
from edge_inspector.errors import StartupError
from edge_inspector.imageio import IMAGE_SUFFIXES, read_image
from edge_inspector.regions.base import RegionFinder
from edge_inspector.regions.boxes import summarize
from edge_inspector.regions.patches import Scorer, patch_features, position_distance, self_distance
from edge_inspector.regions.texture_boxes import boxes_from_peaks, gumbel_threshold, neighbour_boxes
from edge_inspector.regions.texture_config import TextureConfig

__all__ = ["TextureConfig", "TextureFinder", "TextureModel", "gray_of", "load_good_images", "read_with_mask"]

log = structlog.get_logger(__name__)


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


def _judged(shape: tuple[int, int], cfg: TextureConfig) -> np.ndarray:
    """The cells whose centre lies at least ``border_px`` from the working image's border."""
    st, b = cfg.stride_px, cfg.border_px
    ys = st // 2 + st * np.arange(shape[0])
    xs = st // 2 + st * np.arange(shape[1])
    inside_y = (ys >= b) & (ys < st * shape[0] - b)
    inside_x = (xs >= b) & (xs < st * shape[1] - b)
    return inside_y[:, None] & inside_x[None, :]


Grid = tuple[np.ndarray, np.ndarray]  # standardised features (rows x cols x D), known-good cells


class TextureModel:
    """A fitted texture model of one product."""

    def __init__(self, cfg: TextureConfig, images: list[np.ndarray],
                 masks: list[np.ndarray | None] | None = None) -> None:
        if not images:
            raise StartupError("the texture model needs at least one known-good image")
        self.cfg = cfg
        masks = masks if masks is not None else [None] * len(images)
        if len(masks) != len(images):
            raise StartupError(f"{len(masks)} masks for {len(images)} known-good images")
        # in the order of their content: the calibration's folds and the bank's sample do not depend
        # on how the images were listed (a station's reference first and then its folder, or a
        # tool's index), so one set of images is one model
        order = sorted(range(len(images)), key=lambda i: hashlib.sha256(
            np.ascontiguousarray(images[i]).tobytes()).hexdigest())
        images, masks = [images[i] for i in order], [masks[i] for i in order]
        grids = []
        for img, mask in zip(images, masks):
            if mask is not None and mask.shape[:2] != img.shape[:2]:
                raise StartupError(f"a mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                                   f"{img.shape[1]}x{img.shape[0]}")
            feats, s = patch_features(img, cfg)
            grids.append((feats, _good_cells(feats.shape[:2], s, mask, cfg)))
        sizes = [img.shape[:2] for img in images]
        good = np.concatenate([f[g] for f, g in grids])
        if len(good) < 16:
            raise StartupError(f"the texture model found only {len(good)} known-good patches to learn from")
        self.mu = good.mean(0)
        self.sd = good.std(0) + 1e-3
        rng = np.random.default_rng(cfg.seed)
        grids = [(self._standard(f), g) for f, g in grids]
        self.level, self.maxima = self._calibrate(grids, sizes, rng)
        self.tolerance = self.level / cfg.sensitivity
        self.scorer = Scorer(cfg, good, rng, self.mu, self.sd) if "bank" in cfg.explainers else None
        self.aligned = self._aligned(grids, sizes)
        self.samples, self.patches = len(images), len(good)
        h = hashlib.sha256(cfg.model_dump_json(exclude={"good_images", "reference", "sam_dir"}).encode())
        for img in images:
            h.update(np.ascontiguousarray(img).tobytes())
        self.fingerprint = "texture-" + h.hexdigest()[:12]
        log.info("texture_model_fitted", images=len(images), patches=len(good), level=round(self.level, 4),
                 explainers=list(cfg.explainers), aligned_sizes=len(self.aligned))

    def _standard(self, feats: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((feats - self.mu) / self.sd, np.float32)

    def _aligned(self, grids: list[Grid], sizes: list[tuple[int, int]]) -> dict[tuple[int, int], list[Grid]]:
        """The known-good grids by the size of their frame, for the position explainer: only sizes with
        at least ``position_k`` images (fewer cannot give the k-th closest, and one image of a size is
        no evidence that the views are aligned). Frames of different sizes whose working grids happen
        to match are not aligned views."""
        out: dict[tuple[int, int], list[Grid]] = {}
        if "position" not in self.cfg.explainers:
            return out
        for (z, good), size in zip(grids, sizes):
            refs = out.setdefault(tuple(size), [])
            if len(refs) < self.cfg.position_images and good.any():
                refs.append((z, good))
        return {k: v for k, v in out.items() if len(v) >= self.cfg.position_k}

    def _cells(self, z: np.ndarray, scorer: Scorer | None, refs: list[Grid]) -> np.ndarray:
        """The anomaly of each cell of a standardised grid: the smallest normalised explainer distance."""
        cfg = self.cfg
        judged = _judged(z.shape[:2], cfg)
        if not judged.any():
            judged = np.ones(z.shape[:2], bool)
        st = cfg.stride_px
        maps = []
        if scorer is not None:
            d = scorer(z.reshape(-1, z.shape[-1]), standardised=True).reshape(z.shape[:2])
            maps.append(self._normalised(d, judged) * cfg.bank_slack)
        if refs:
            d = position_distance(z, refs, max(0, int(round(cfg.position_window_px / st))), cfg.position_k)
            maps.append(self._normalised(d, judged))
        if "self" in cfg.explainers:
            stride = max(cfg.self_stride, int(np.ceil(np.sqrt(z.shape[0] * z.shape[1] / cfg.self_refs))))
            maps.append(self._normalised(self_distance(z, max(1, int(round(cfg.self_exclusion_px / st))),
                                                       stride), judged) * cfg.self_slack)
        out = np.minimum.reduce(maps) if maps else np.zeros(z.shape[:2], np.float32)
        finite = np.isfinite(out)
        out = np.where(finite, out, out[finite].max() if finite.any() else 0.0)
        return np.where(judged, out, 0).astype(np.float32)

    def _normalised(self, d: np.ndarray, judged: np.ndarray) -> np.ndarray:
        """A distance map smoothed and divided by its median over the judged cells; cells it does not
        cover (inf: no known-good patch there) stay inf, so that this explainer explains nothing there."""
        d = d.astype(np.float32)
        covered = np.isfinite(d)
        if not covered.any():
            return d
        d = np.where(covered, d, d[covered].max())
        if self.cfg.smooth_cells > 0:
            d = cv2.GaussianBlur(d, (0, 0), self.cfg.smooth_cells)
        ok = judged & covered
        d = d / max(float(np.median(d[ok] if ok.any() else d)), 1e-6)
        return np.where(covered, d, np.inf).astype(np.float32)

    def _calibrate(self, grids: list[Grid], sizes: list[tuple[int, int]],
                   rng: np.random.Generator) -> tuple[float, np.ndarray]:
        """The per-image maxima of held-out known-good maps and the threshold fitted on them. Folds of
        images (up to five), each scored against explainers built from the others, dealt
        ``calibration_rounds`` times; one image: its left and right halves (not aligned with each
        other: no position explainer)."""
        cfg = self.cfg
        halves = len(grids) == 1
        if halves:
            z, good = grids[0]
            mid = z.shape[1] // 2
            grids = [(z[:, :mid], good[:, :mid]), (z[:, mid:], good[:, mid:])]
            sizes = [(0, 0), (0, 0)]
        k = min(len(grids), 5)
        per_fold = max(1, -(-cfg.calibration_images // k))
        units = max(1, -(-16 // min(len(grids), cfg.calibration_images)))  # at least 16 maxima to fit
        # one fold assignment is one draw: which images sit out together moves the threshold (on
        # BSData, between 7 and 9 of 18 test pits at the same sensitivity). Each round deals the images
        # into folds in another order; the threshold is the median of the rounds' thresholds.
        rounds = 1 if halves or len(grids) <= k else cfg.calibration_rounds
        levels, maxima = [], []
        for r in range(rounds):
            order = (np.arange(len(grids)) if r == 0
                     else np.random.default_rng([cfg.seed, r]).permutation(len(grids)))
            fold = np.empty(len(grids), int)
            fold[order] = np.arange(len(grids)) % k
            v = self._fold_maxima(grids, sizes, fold, k, per_fold, units, halves, rng)
            if v.size:
                levels.append(gumbel_threshold(v, cfg.false_box_rate, units))
                maxima.append(v)
        if not levels:
            raise StartupError("the texture model has too few known-good patches to calibrate its threshold")
        self.round_levels = tuple(levels)
        return max(float(np.median(levels)), 1e-3), np.concatenate(maxima)

    def _fold_maxima(self, grids: list[Grid], sizes: list[tuple[int, int]], fold: np.ndarray, k: int,
                     per_fold: int, units: int, halves: bool, rng: np.random.Generator) -> np.ndarray:
        """The held-out maxima of one fold assignment (``fold[i]``: the fold of image i)."""
        cfg = self.cfg
        maxima = []
        for i in range(k):
            held = [(g, z) for g, z, f in zip(grids, sizes, fold) if f == i]
            other = [g for g, f in zip(grids, fold) if f != i]
            other_sizes = [z for z, f in zip(sizes, fold) if f != i]
            scorer = None
            if "bank" in cfg.explainers:
                rows = np.concatenate([z[g] for z, g in other])
                if len(rows) < 16:
                    continue
                scorer = Scorer(cfg, rows, rng, np.zeros_like(self.mu), np.ones_like(self.sd))
            aligned = {} if halves else self._aligned(other, other_sizes)
            step = max(1, -(-len(held) // per_fold))
            for (z, good), size in held[::step]:
                cells = self._cells(z, scorer, aligned.get(tuple(size), []))
                inner = good & _judged(z.shape[:2], cfg)
                parts = zip(np.array_split(cells, units, axis=1), np.array_split(inner, units, axis=1))
                for part, ok in parts:
                    if ok.any():
                        maxima.append(float(part[ok].max()))
        return np.array(maxima)

    def _grid(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if image is None or image.size == 0 or min(image.shape[:2]) < 8:
            raise ValueError(f"the frame is too small for the texture model: {image.shape[:2]}")
        feats, s = patch_features(image, self.cfg)
        z = self._standard(feats)
        return self._cells(z, self.scorer, self.aligned.get(tuple(image.shape[:2]), [])) / self.tolerance, s

    def _to_map(self, cells: np.ndarray, image_shape: tuple[int, ...], s: float) -> np.ndarray:
        rows, cols = cells.shape
        h, w = int(round(image_shape[0] * s)), int(round(image_shape[1] * s))
        st = self.cfg.stride_px
        # cell (i, j) is centred on pixel (st//2 + st*j, st//2 + st*i): resize onto that grid
        a = cv2.resize(cells, (cols * st, rows * st), interpolation=cv2.INTER_LINEAR)
        a = cv2.copyMakeBorder(a, 0, max(0, h - a.shape[0]), 0, max(0, w - a.shape[1]),
                               cv2.BORDER_REPLICATE)[:h, :w]
        return np.ascontiguousarray(a, np.float32)

    def anomaly_map(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The map at working scale (in threshold units) and the working scale."""
        cells, s = self._grid(image)
        return self._to_map(cells, image.shape, s), s

    def boxes(self, cells: np.ndarray, s: float, frame_shape: tuple[int, int], threshold: float = 1.0,
              gray: np.ndarray | None = None):
        """The boxes of a cell map (threshold units) at ``threshold`` (the sweep's sensitivity divides it);
        with the frame's grey image, the separate dark spots beside compact boxes too."""
        cfg = self.cfg
        p = cfg.boxes.model_copy(update={"threshold": threshold})
        boxes = boxes_from_peaks(cells, cfg.stride_px, p, cfg.box_level, cfg.box_grow,
                                 lambda v: v / s, frame_shape, cfg.box_footprint_px)
        if gray is not None and cfg.neighbour_spots and boxes:
            boxes = neighbour_boxes(boxes, gray, s, cfg.neighbour_sigmas_px, cfg.neighbour_max_px,
                                    cfg.neighbour_window, cfg.neighbour_strength, p.max_boxes)
        return boxes

    def find(self, image: np.ndarray) -> Regions:
        cells, s = self._grid(image)
        p = self.cfg.boxes
        boxes = self.boxes(cells, s, image.shape[:2], p.threshold, gray_of(image))
        a = self._to_map(cells, image.shape, s)
        summary, score = summarize(a, None, boxes, p.threshold)
        full = cv2.resize(a, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR) if s < 1 else a
        return Regions(score=score, boxes=tuple(boxes), summary=summary, model=self.fingerprint,
                       anomaly_map=full)


def gray_of(image: np.ndarray) -> np.ndarray:
    """A frame's grey image (the neighbour spots are searched on it)."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image if image.ndim == 2 else image[:, :, 0]


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
