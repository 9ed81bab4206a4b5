"""Patch features and the good-patch models of the texture model (no torch, no downloaded weights).

``patch_features`` describes a frame on a grid of patches with a small multi-scale filter bank;
``Scorer`` measures how far each patch is from the known-good ones (nearest neighbour in a memory
bank, or Mahalanobis distance to one Gaussian). ``cfg`` is a :class:`~.texture.TextureConfig`.
"""

from __future__ import annotations

import cv2
import numpy as np


def _work_scale(cfg, shape: tuple[int, ...]) -> float:
    return min(cfg.scale, cfg.max_side_px / max(shape[0], shape[1]))


def patch_features(image: np.ndarray, cfg) -> tuple[np.ndarray, float]:
    """Features of every patch on the grid (rows x cols x D, float32) and the working scale used."""
    s = _work_scale(cfg, image.shape)
    img = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else image
    if img.ndim == 3 and img.shape[2] == 3:
        lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
        lum, chroma = lab[:, :, 0] / 100.0, [lab[:, :, 1] / 128.0, lab[:, :, 2] / 128.0]
    else:
        lum, chroma = (img if img.ndim == 2 else img[:, :, 0]).astype(np.float32) / 255.0, []
    if not cfg.color:
        chroma = []
    pool = cfg.patch_px / 2.0

    def blur(x: np.ndarray, sigma: float) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    def energy(x: np.ndarray) -> np.ndarray:
        return np.log(blur(x * x, pool) + 1e-6)

    mean = blur(lum, pool)
    weber = np.log(mean + 0.05)  # energies are relative to the local brightness (contrast, not light)
    feats: list[np.ndarray] = []
    thetas = np.deg2rad([0.0, 45.0, 90.0, 135.0])
    for sigma in cfg.scales:
        g = blur(lum, sigma)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) * (sigma / 8.0)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) * (sigma / 8.0)
        oriented = [energy(gx * np.cos(t) + gy * np.sin(t)) for t in thetas]
        total = np.log(np.exp(np.stack(oriented)).sum(0))
        aniso = [oriented[0] - oriented[2], oriented[1] - oriented[3]]
        if cfg.rotation_invariant:
            aniso = [np.sqrt(aniso[0] ** 2 + aniso[1] ** 2)]
        dog = g - blur(lum, 2 * sigma)
        feats += [total - 2 * weber, *aniso, energy(dog) - 2 * weber, blur(dog, pool) / (mean + 0.05)]
        if getattr(cfg, "blob_features", False):
            # a pit is a compact dark spot: strong in every orientation (a groove or scratch is weak
            # along itself), a positive Hessian determinant, darker than its surround
            lxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3) * sigma * sigma
            lyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3) * sigma * sigma
            lxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3) * sigma * sigma
            det = lxx * lyy - lxy * lxy
            dark = np.maximum(lxx + lyy, 0)  # positive Laplacian: a dark spot's centre
            feats += [np.min(np.stack(oriented), 0) - 2 * weber,
                      _pool_max(np.maximum(det, 0) * (lxx + lyy > 0), pool) / (mean + 0.05) ** 2,
                      _pool_max(dark, pool) / (mean + 0.05)]
    context = blur(lum, 4 * pool)
    var = np.maximum(blur(lum * lum, pool) - mean * mean, 0)
    feats += [mean, np.log(var + 1e-6) - 2 * weber, context, mean - context]
    feats += [blur(c, pool) for c in chroma]
    st = cfg.stride_px
    grid = np.stack([f[st // 2::st, st // 2::st] for f in feats], axis=-1)
    return np.ascontiguousarray(grid, np.float32), s


def _pool_max(x: np.ndarray, pool: float) -> np.ndarray:
    """The strongest response within a patch (a small spot is not averaged away)."""
    k = max(3, int(round(2 * pool)) | 1)
    return cv2.dilate(x, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))


def nearest_distance(query: np.ndarray, bank: np.ndarray, bank_sq: np.ndarray | None = None,
                     chunk: int = 2048) -> np.ndarray:
    """Euclidean distance of each query row to its nearest bank row (chunked matrix products)."""
    if bank_sq is None:
        bank_sq = (bank * bank).sum(1)
    out = np.empty(len(query), np.float32)
    for i in range(0, len(query), chunk):
        q = query[i:i + chunk]
        d2 = bank_sq[None, :] - 2.0 * (q @ bank.T)
        out[i:i + chunk] = d2.min(1) + (q * q).sum(1)
    return np.sqrt(np.maximum(out, 0))


class Scorer:
    """The good patches' model: a knn bank or one Gaussian, on standardised features."""

    def __init__(self, cfg, good: np.ndarray, rng: np.random.Generator,
                 mu: np.ndarray, sd: np.ndarray) -> None:
        self.cfg, self.mu, self.sd = cfg, mu, sd
        z = (good - mu) / sd
        if cfg.model == "gaussian":
            self.mean = z.mean(0)
            cov = np.cov(z, rowvar=False) + 0.01 * np.eye(z.shape[1], dtype=np.float32)
            self.prec = np.linalg.inv(cov).astype(np.float32)
            return
        self.bank = _cover(z, cfg.bank_size, rng, cfg.outlier_fraction)
        self.bank_sq = (self.bank * self.bank).sum(1)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        z = (feats - self.mu) / self.sd
        if self.cfg.model == "gaussian":
            d = z - self.mean
            return np.sqrt(np.maximum(((d @ self.prec) * d).sum(1), 0))
        return nearest_distance(z, self.bank, self.bank_sq)


def _cover(z: np.ndarray, size: int, rng: np.random.Generator, outlier_fraction: float) -> np.ndarray:
    """A bank of ``size`` rows sampled from ``z`` without its rarest rows: each candidate's distance
    to a disjoint sample of the others is measured, and the ``outlier_fraction`` farthest are dropped
    (known-good images are rarely spotless; an unlabelled defect in the bank would hide its twins)."""
    if outlier_fraction <= 0:
        return np.ascontiguousarray(z[rng.choice(len(z), size, replace=False)] if len(z) > size else z)
    order = rng.permutation(len(z))
    cand = z[order[: min(len(z), 2 * size)]]
    ref = z[order[min(len(z), 2 * size):]]
    if len(ref) < size // 4:  # few patches: split the candidates themselves
        cand, ref = z[order[::2]], z[order[1::2]]
    ref = ref[: 4 * size]
    d = nearest_distance(cand, ref)
    keep = cand[d <= np.quantile(d, 1.0 - outlier_fraction)]
    if len(keep) > size:
        keep = keep[rng.choice(len(keep), size, replace=False)]
    return np.ascontiguousarray(keep)
