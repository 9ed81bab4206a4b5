"""Patch features and the good-patch models of the texture model (no torch, no downloaded weights).

``patch_features`` describes a frame on a grid of patches with a small multi-scale filter bank.
Three measures of how far a patch is from what explains it: ``Scorer`` (the known-good patches: the
nearest in a memory bank, or the Mahalanobis distance to one Gaussian), ``position_distance`` (the
known-good images' patches at the same place, for aligned views) and ``self_distance`` (the frame's
own surface away from the patch). ``cfg`` is a :class:`~.texture.TextureConfig`.
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


def self_distance(z: np.ndarray, exclusion: int, stride: int = 2, block: int = 16) -> np.ndarray:
    """How unlike the rest of its own frame each cell is: the distance to the nearest cell of the same
    grid (every ``stride``-th row and column) that lies outside its neighbourhood. A pit has no twin
    elsewhere on the surface; wear, soiling and grooves repeat along it. Queries go in blocks of
    ``block`` x ``block`` cells, each excluding the rectangle of its block grown by ``exclusion``:
    every query ignores the cells within ``exclusion`` of it, and some up to ``exclusion + block``
    away. A frame too small to hold anything farther scores 0."""
    rows, cols, dim = z.shape
    grid = np.ascontiguousarray(z[::stride, ::stride])
    hr, wr = grid.shape[:2]
    # one product gives |r|^2 - 2 q.r: the references carry -2 r and |r|^2, the queries q and 1
    ref = np.concatenate([-2.0 * grid.reshape(-1, dim), (grid * grid).sum(-1).reshape(-1, 1)], axis=1)
    ref_t = np.ascontiguousarray(ref.T, np.float32)
    out = np.zeros((rows, cols), np.float32)
    chunk = 64  # queries per product: the distance buffer stays in the cache
    buf = np.empty((chunk, hr * wr), np.float32)
    for y0 in range(0, rows, block):
        y1 = min(rows, y0 + block)
        ya, yb = max(0, -(-(y0 - exclusion) // stride)), min(hr, -(-(y1 + exclusion) // stride))
        for x0 in range(0, cols, block):
            x1 = min(cols, x0 + block)
            xa, xb = max(0, -(-(x0 - exclusion) // stride)), min(wr, -(-(x1 + exclusion) // stride))
            if ya == 0 and xa == 0 and yb == hr and xb == wr:
                continue
            q = z[y0:y1, x0:x1].reshape(-1, dim)
            q1 = np.concatenate([q, np.ones((len(q), 1), np.float32)], axis=1)
            best = np.empty(len(q), np.float32)
            for i in range(0, len(q), chunk):
                d2 = buf[: min(chunk, len(q) - i)]
                np.matmul(q1[i:i + chunk], ref_t, out=d2)
                d2.reshape(len(d2), hr, wr)[:, ya:yb, xa:xb] = np.inf
                best[i:i + chunk] = d2.min(1)
            out[y0:y1, x0:x1] = (best + (q * q).sum(1)).reshape(y1 - y0, x1 - x0)
    return np.sqrt(np.maximum(out, 0))


def position_distance(z: np.ndarray, refs: list[tuple[np.ndarray, np.ndarray]], window: int,
                      k: int) -> np.ndarray:
    """Per cell, the ``k``-th smallest over the reference grids (same shape as ``z``, each with its
    known-good cells) of the distance to that reference's nearest known-good cell within
    +-``window`` cells of the same place. For views that are aligned (a fixture, a rig): what is
    always at that place (an edge, a reflection) is explained; k > 1 keeps one reference's
    unlabelled defect from hiding a defect at the same place. Cells no reference covers: inf."""
    rows, cols, _ = z.shape
    q_sq = np.einsum("hwd,hwd->hw", z, z)
    per = []
    for r, good in refs:
        rp = np.pad(r, ((window, window), (window, window), (0, 0)), mode="edge")
        gp = np.pad(good, window, mode="constant", constant_values=False)
        r_sq = np.einsum("hwd,hwd->hw", rp, rp)
        best = np.full((rows, cols), np.inf, np.float32)
        for dy in range(2 * window + 1):
            for dx in range(2 * window + 1):
                d2 = q_sq + r_sq[dy:dy + rows, dx:dx + cols] - 2.0 * np.einsum(
                    "hwd,hwd->hw", z, rp[dy:dy + rows, dx:dx + cols])
                d2[~gp[dy:dy + rows, dx:dx + cols]] = np.inf
                np.minimum(best, d2, out=best)
        per.append(best)
    kk = min(k, len(per)) - 1
    d2 = np.partition(np.stack(per), kk, axis=0)[kk] if len(per) > 1 else per[0]
    return np.sqrt(np.maximum(d2, 0))


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

    def __call__(self, feats: np.ndarray, standardised: bool = False) -> np.ndarray:
        z = feats if standardised else (feats - self.mu) / self.sd
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
