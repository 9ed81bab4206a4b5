"""Bring a registered frame to the reference's light: a smooth gain and offset field, fitted robustly.

A second capture is lit differently: another gain and offset, a gradient across the field (a lamp
to one side), a vignette. The field is a low-order polynomial in the image coordinates (order 0: one
gain and offset; 1: plus a linear gradient; 2: plus a quadratic vignette), fitted by iteratively
re-weighted least squares (Huber weights) on a grid of sampled pixels, so that defects and edges that
moved do not pull it. Binarised scans come out unchanged (gain 1, offset 0).
"""

from __future__ import annotations

import cv2
import numpy as np


def _terms(x: np.ndarray, y: np.ndarray, order: int) -> list[np.ndarray]:
    one = np.ones_like(x)
    if order == 0:
        return [one]
    if order == 1:
        return [one, x, y]
    return [one, x, y, x * x, y * y, x * y]


def fit_light(frame: np.ndarray, reference: np.ndarray, valid: np.ndarray, order: int = 2,
              samples: int = 8000, iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (gain terms, offset terms) with reference ~ gain(x, y) * frame + offset(x, y)."""
    h, w = frame.shape
    step = max(1, int(np.sqrt(h * w / samples)))
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    keep = valid[ys, xs] > 0
    ys, xs = ys[keep], xs[keep]
    f = frame[ys, xs].astype(np.float64)
    r = reference[ys, xs].astype(np.float64)
    nx, ny = (xs - w / 2) / (w / 2), (ys - h / 2) / (h / 2)
    gain_t = _terms(nx, ny, order)
    off_t = _terms(nx, ny, min(order, 1))
    n_gain = len(gain_t)
    if f.size < 4 * (n_gain + len(off_t)) or f.std() < 1e-6:
        return np.r_[1.0, np.zeros(n_gain - 1)], np.zeros(len(off_t))
    a = np.stack([f * t for t in gain_t] + off_t, 1)
    lo, hi = float(r.min()), float(r.max())
    bins = np.minimum(((r - lo) / max(hi - lo, 1e-6) * 8).astype(int), 7)
    balance = 1.0 / np.bincount(bins, minlength=8)[bins]
    balance *= balance.size / balance.sum()
    weights = balance.copy()
    coef = np.zeros(a.shape[1])
    # the scale of the residuals never falls below 2 % of the reference's contrast: on a binarised
    # frame most residuals are exactly 0, and a scale from them alone would weigh every other pixel out
    floor = 0.02 * max(float(np.percentile(r, 98) - np.percentile(r, 2)), 1.0)
    # a mild ridge keeps the field's higher terms at 0 where the data does not ask for them (a frame
    # that is mostly one grey level constrains the gain at few places)
    ridge = np.zeros(a.shape[1])
    ridge[1:n_gain] = 1e-3 * float(np.mean(f * f)) * f.size
    for _ in range(iterations):
        # normal equations, a 9x9 solve (lstsq's SVD costs 100x more); einsum keeps these small
        # products off the BLAS thread pool, which stalls them when the cores are busy
        try:
            aw = a * weights[:, None]
            coef = np.linalg.solve(np.einsum("ni,nj->ij", aw, a) + np.diag(ridge + 1e-9),
                                   np.einsum("ni,n->i", aw, r))
        except np.linalg.LinAlgError:
            break
        res = r - np.einsum("ni,i->n", a, coef)
        scale = max(1.4826 * float(np.median(np.abs(res))), floor)
        # Huber, not Tukey: a frame that is mostly two grey levels (copper, substrate) must keep its
        # minority level in the fit, or the gain is left to the majority alone and comes out anything
        u = np.abs(res) / (1.345 * scale)
        weights = balance * np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12))
        if weights.sum() < a.shape[1] * 4:
            break
    return coef[:n_gain], coef[n_gain:]


def match_light(frame: np.ndarray, reference: np.ndarray, valid: np.ndarray, order: int = 2) -> np.ndarray:
    """``frame`` (float32, on the reference grid) with the reference's light; ``valid``: the pixels
    to learn it from (see :func:`fit_light`)."""
    gain_c, off_c = fit_light(frame, reference, valid, order)
    h, w = frame.shape
    # the fields are smooth: evaluate them on a coarse grid and interpolate
    gh, gw = max(2, h // 8), max(2, w // 8)
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float64)
    nx, ny = ((xs + 0.5) * w / gw - w / 2) / (w / 2), ((ys + 0.5) * h / gh - h / 2) / (h / 2)
    gain = sum(c * t for c, t in zip(gain_c, _terms(nx, ny, order), strict=True))
    off = sum(c * t for c, t in zip(off_c, _terms(nx, ny, min(order, 1)), strict=True))
    gain = np.clip(gain, 0.3, 3.0).astype(np.float32)
    off = np.asarray(off, np.float32) * np.ones_like(gain)
    gain = cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)
    off = cv2.resize(off, (w, h), interpolation=cv2.INTER_LINEAR)
    return frame * gain + off
