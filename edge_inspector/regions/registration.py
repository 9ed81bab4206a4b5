"""Register a frame to the reference: a homography, coarse to fine, that says when it cannot be trusted.

A second capture of a part is rotated (a couple of degrees on a conveyor), shifted (partly out of the
field of view), scaled, seen in a slight perspective and lit differently. The registrar finds the
homography that maps reference coordinates to frame coordinates:

1. both images are band-passed (a small blur minus a large one): the lighting gradient, gain and
   offset go, edges stay, and binarised scans become smooth enough for sub-pixel work;
2. on the coarsest level of a pyramid (longest side about 128 px) phase correlation finds the shift;
3. on each level, coarse to fine, an inverse-compositional Gauss-Newton fit (Lucas-Kanade, as in
   Baker & Matthews) refines the homography on the reference's strongest edge pixels, spread over a
   grid of cells so that every corner of the field weighs in. The reference's side (its gradients,
   the Jacobian) is computed once per product; a frame costs a resize, two blurs and a few sparse
   samplings per level. Robust weights (Tukey) ignore defects and whatever the frame shows beyond
   the part; points that fall outside the frame are left out;
4. the result is *checked*: the correlation of the band-passed images on the sampled edges, the share
   of edge points that agree, the overlap of frame and reference, and the pose (rotation, scale,
   perspective, shift) within the configured budget. A registration that fails a check is reported
   as untrusted with its figures, and the regions stage turns it into a NO-READ
   ``registration_failed``: a wrong registration would otherwise flood the part with boxes.

``warp`` follows OpenCV's ECC convention (reference -> frame): ``cv2.warpPerspective(frame, warp, size,
flags=WARP_INVERSE_MAP)`` brings the frame onto the reference grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np


class Method(StrEnum):
    NONE = "none"
    PHASE = "phase"  # translation only, sub-pixel
    AFFINE = "affine"  # shift, rotation, scale, shear
    HOMOGRAPHY = "homography"  # affine + perspective (the default)
    ECC = "ecc"  # the former name of the default: kept so that existing recipes load


@dataclass(frozen=True, slots=True)
class Limits:
    """What a trusted registration may look like."""

    max_shift_px: float = 64.0
    max_rotation_deg: float = 5.0
    max_scale: float = 0.05  # |scale - 1|
    max_perspective_px: float = 8.0  # corner displacement from the best affine
    min_correlation: float = 0.5  # band-passed images on the sampled edges, after the fit
    min_inliers: float = 0.5  # share of the sampled edge points within the robust tolerance
    min_overlap: float = 0.5  # share of the reference inside the frame


@dataclass(frozen=True, slots=True)
class Registration:
    warp: np.ndarray  # 3x3 float64, reference -> frame
    converged: bool
    correlation: float = 1.0
    inliers: float = 1.0
    overlap: float = 1.0
    problem: str = ""  # why it cannot be trusted; empty when it can
    size: tuple[int, int] = (0, 0)  # the reference's width, height

    @property
    def trusted(self) -> bool:
        return self.converged and not self.problem

    @property
    def dx(self) -> float:
        return float(self._at_centre()[0])

    @property
    def dy(self) -> float:
        return float(self._at_centre()[1])

    def _at_centre(self) -> np.ndarray:
        """The shift of the reference's centre (the translation, free of the rotation's lever)."""
        c = np.float64([[[self.size[0] / 2, self.size[1] / 2]]])
        return (cv2.perspectiveTransform(c, self.warp) - c)[0, 0]

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.warp[1, 0] - self.warp[0, 1],
                                           self.warp[0, 0] + self.warp[1, 1])))

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.warp[:2, :2]))))

    def to_json(self) -> dict:
        out: dict = {
            "dx": round(self.dx, 3), "dy": round(self.dy, 3), "angle_deg": round(self.angle_deg, 4),
            "scale": round(self.scale, 5), "correlation": round(self.correlation, 3),
            "inliers": round(self.inliers, 3), "overlap": round(self.overlap, 3),
            "converged": float(self.converged),
            "warp": [round(float(v), 7) for v in (self.warp / self.warp[2, 2]).ravel()]}
        if self.problem:
            out["problem"] = self.problem
        return out


IDENTITY = np.eye(3)


def _lowpass(img: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur, computed on a smaller copy when it is wide (the same result, cheaper)."""
    k = int(sigma // 4)
    if k < 2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / k)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _bandpass(img: np.ndarray, fine: float, coarse: float) -> np.ndarray:
    small = cv2.GaussianBlur(img, (0, 0), fine) if fine > 0 else img
    return small - _lowpass(small, coarse)


def _jacobian(x: np.ndarray, y: np.ndarray, gx: np.ndarray, gy: np.ndarray, n: int) -> np.ndarray:
    """Steepest-descent images of a warp at identity, in normalised coordinates: 2 (shift),
    6 (affine) or 8 (homography) parameters."""
    cols = [gx, gy]
    if n >= 6:
        cols += [gx * x, gx * y, gy * x, gy * y]
    if n == 8:
        cols += [-(gx * x + gy * y) * x, -(gx * x + gy * y) * y]
    return np.stack(cols, 1)


def _delta(p: np.ndarray) -> np.ndarray:
    """The warp (normalised coordinates) of a parameter increment."""
    d = np.eye(3)
    d[0, 2], d[1, 2] = p[0], p[1]
    if p.size >= 6:
        d[0, 0] += p[2]
        d[0, 1] += p[3]
        d[1, 0] += p[4]
        d[1, 1] += p[5]
    if p.size == 8:
        d[2, 0], d[2, 1] = p[6], p[7]
    return d


@dataclass(slots=True)
class _Level:
    scale: float  # this level's size / the reference's
    norm: np.ndarray  # 3x3: level pixels -> normalised coordinates (centre 0, half side 1)
    fine: float
    coarse: float
    pts: np.ndarray  # N x 2 float32, level pixels
    values: np.ndarray  # N, the band-passed reference at pts
    sd: np.ndarray = field(default_factory=lambda: np.zeros(0))  # N x n


class Registrar:
    """Registers frames to one reference. Computes the reference's side of the work once."""

    def __init__(self, reference: np.ndarray, method: Method = Method.HOMOGRAPHY,
                 limits: Limits = Limits(), points: int = 6000, coarse_side: int = 128,
                 fine_side: int = 1100) -> None:
        self.method = Method.HOMOGRAPHY if Method(method) is Method.ECC else Method(method)
        self.limits = limits
        ref = reference.astype(np.float32)
        self.height, self.width = ref.shape
        self.n_params = {Method.PHASE: 2, Method.AFFINE: 6, Method.HOMOGRAPHY: 8}.get(self.method, 0)
        longest = max(self.width, self.height)
        # levels from coarse to fine, each about twice the previous; the finest at most fine_side
        top = min(1.0, fine_side / longest)
        scales = [top]
        while longest * scales[-1] / 2 >= coarse_side * 0.9:
            scales.append(scales[-1] / 2)
        self.levels = [self._level(ref, s, points) for s in reversed(scales)]
        c = self.levels[0]
        self._coarse_ref = self._image(ref, c)
        self._window = cv2.createHanningWindow(self._coarse_ref.shape[::-1], cv2.CV_32F)

    # --- the reference's side ------------------------------------------------------------------

    def _resize(self, img: np.ndarray, scale: float) -> np.ndarray:
        if scale >= 0.999:
            return img
        size = (max(8, round(self.width * scale)), max(8, round(self.height * scale)))
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)

    def _image(self, img: np.ndarray, lv: _Level) -> np.ndarray:
        return _bandpass(self._resize(img, lv.scale), lv.fine, lv.coarse)

    def _level(self, ref: np.ndarray, scale: float, points: int) -> _Level:
        w, h = max(8, round(self.width * scale)), max(8, round(self.height * scale))
        half = max(w, h) / 2
        norm = np.array([[1 / half, 0, -w / 2 / half], [0, 1 / half, -h / 2 / half], [0, 0, 1]])
        lv = _Level(scale, norm, fine=1.0, coarse=max(4.0, 0.04 * max(w, h)), pts=np.zeros((0, 2)),
                    values=np.zeros(0))
        img = self._image(ref, lv)
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3) / 8
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3) / 8
        mag = cv2.magnitude(gx, gy)
        b = 2  # keep off the border, where the blurs are one-sided
        mag[:b], mag[-b:], mag[:, :b], mag[:, -b:] = 0, 0, 0, 0
        lv.pts = _spread_points(mag, points)
        xs, ys = lv.pts[:, 0].astype(int), lv.pts[:, 1].astype(int)
        lv.values = img[ys, xs].astype(np.float64)
        # gradients w.r.t. normalised coordinates (chain rule through the level's scaling)
        gnx, gny = gx[ys, xs] * half, gy[ys, xs] * half
        nx, ny = (lv.pts[:, 0] - w / 2) / half, (lv.pts[:, 1] - h / 2) / half
        lv.sd = _jacobian(nx.astype(np.float64), ny.astype(np.float64), gnx.astype(np.float64),
                          gny.astype(np.float64), max(self.n_params, 2))
        return lv

    # --- a frame ---------------------------------------------------------------------------------

    def register(self, frame: np.ndarray) -> Registration:
        size = (self.width, self.height)
        if self.method is Method.NONE:
            return Registration(IDENTITY.copy(), True, size=size)
        if frame.shape[:2] != (self.height, self.width):
            return Registration(IDENTITY.copy(), False, 0, 0, 0,
                                f"the frame is {frame.shape[1]}x{frame.shape[0]}, the reference is "
                                f"{self.width}x{self.height}", size)
        img = frame.astype(np.float32)
        lv = self.levels[0]
        coarse = self._image(img, lv)
        # OpenCV 5's phaseCorrelate windows its first input in place: give it a copy
        (sx, sy), _ = cv2.phaseCorrelate(self._coarse_ref.copy(), coarse.copy(), self._window)
        if not np.isfinite(sx):
            sx = sy = 0.0
        warp = np.array([[1, 0, sx / lv.scale], [0, 1, sy / lv.scale], [0, 0, 1]], np.float64)
        images = []
        for i, lv in enumerate(self.levels):
            images.append(coarse if i == 0 else self._image(img, lv))
            warp, *_ = self._fit(images[-1], lv, warp, 12 if i == 0 else 6)
        # trust is measured where the structure is, not the finest level's edge noise (a rough edge
        # of a binarised scan decorrelates there even when the fit is right): the second level
        k = min(1, len(self.levels) - 1)
        _, corr, inl = self._fit(images[k], self.levels[k], warp, 1, update=False)
        return self._checked(warp, corr, inl)

    def _fit(self, img: np.ndarray, lv: _Level, warp: np.ndarray, iterations: int, update: bool = True):
        """Inverse-compositional Gauss-Newton at one level; ``warp`` in reference pixels. Returns the
        warp, and the correlation and inlier share measured at the last iteration's start."""
        s = np.diag([lv.scale, lv.scale, 1.0])
        # normalised reference -> normalised frame at this level
        w = lv.norm @ s @ warp @ np.linalg.inv(s) @ np.linalg.inv(lv.norm)
        inv_norm = np.linalg.inv(lv.norm)
        pts = np.concatenate([lv.pts, np.ones((len(lv.pts), 1))], 1).T  # 3 x N, level pixels
        npts = lv.norm @ pts
        h, wd = img.shape
        sd = lv.sd
        corr = inl = 0.0
        for _ in range(iterations):
            q = np.einsum("ij,jn->in", inv_norm @ w, npts)  # off the BLAS pool (see photometry)
            qx, qy = q[0] / q[2], q[1] / q[2]
            inside = (qx >= 1) & (qx <= wd - 2) & (qy >= 1) & (qy <= h - 2)
            if inside.sum() < 50:
                return warp, 0.0, 0.0
            sampled = cv2.remap(img, qx.astype(np.float32)[None], qy.astype(np.float32)[None],
                                cv2.INTER_LINEAR)[0].astype(np.float64)
            t, f = lv.values[inside], sampled[inside]
            # photometry: frame ~ a * reference + b on the sampled points
            tm, fm = t.mean(), f.mean()
            tc, fc = t - tm, f - fm
            var_t, var_f, cov = float(tc @ tc), float(fc @ fc), float(tc @ fc)
            a = cov / var_t if var_t > 1e-9 else 1.0
            a = a if abs(a) > 1e-3 else 1e-3
            b = fm - a * tm
            err = (f - b) / a - t
            scale = 1.4826 * np.median(np.abs(err)) + 1e-3
            u = err / (4.685 * scale)
            wt = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
            inl = float((np.abs(err) < 3 * scale).mean() * inside.mean())
            corr = cov / np.sqrt(var_t * var_f) if var_t * var_f > 1e-12 else 0.0
            if self.n_params == 0 or not update:
                break
            j = sd[inside]
            jw = j * wt[:, None]
            hess = np.einsum("ni,nj->ij", jw, j) + 1e-9 * np.eye(j.shape[1])
            try:
                dp = np.linalg.solve(hess, np.einsum("ni,n->i", jw, err))
            except np.linalg.LinAlgError:
                break
            w = w @ np.linalg.inv(_delta(dp))
            w /= w[2, 2]
            if np.abs(dp[:2]).max() * max(h, wd) / 2 < 0.005:
                break
        warp = np.linalg.inv(s) @ inv_norm @ w @ lv.norm @ s
        return warp / warp[2, 2], corr, inl

    def _checked(self, warp: np.ndarray, corr: float, inl: float) -> Registration:
        size = (self.width, self.height)
        reg = Registration(warp, True, corr, inl, _overlap(warp, size), size=size)
        lim = self.limits
        problems = []
        if not np.all(np.isfinite(warp)):
            return Registration(IDENTITY.copy(), False, corr, inl, 0.0, "the fit diverged", size)
        if max(abs(reg.dx), abs(reg.dy)) > lim.max_shift_px:
            problems.append(f"shift {reg.dx:.1f}, {reg.dy:.1f} px beyond {lim.max_shift_px:g}")
        if abs(reg.angle_deg) > lim.max_rotation_deg:
            problems.append(f"rotation {reg.angle_deg:.2f} deg beyond {lim.max_rotation_deg:g}")
        if abs(reg.scale - 1) > lim.max_scale:
            problems.append(f"scale {reg.scale:.4f} beyond 1 +/- {lim.max_scale:g}")
        persp = _perspective_px(warp, size)
        if persp > lim.max_perspective_px:
            problems.append(f"perspective {persp:.1f} px beyond {lim.max_perspective_px:g}")
        if corr < lim.min_correlation:
            problems.append(f"correlation {corr:.2f} below {lim.min_correlation:g}")
        if inl < lim.min_inliers:
            problems.append(f"inliers {inl:.2f} below {lim.min_inliers:g}")
        if reg.overlap < lim.min_overlap:
            problems.append(f"overlap {reg.overlap:.2f} below {lim.min_overlap:g}")
        if problems:
            return Registration(warp, True, corr, inl, reg.overlap, "; ".join(problems), size)
        return reg


def _spread_points(mag: np.ndarray, points: int, cells: int = 16) -> np.ndarray:
    """The strongest gradient pixels of each cell of a grid, so that every part of the field has its
    share (a fit on the centre alone would leave the corners unconstrained)."""
    h, w = mag.shape
    per_cell = max(4, points // (cells * cells))
    floor = max(float(np.percentile(mag, 50)), 1e-6)
    out = []
    ys_edges = np.linspace(0, h, cells + 1).astype(int)
    xs_edges = np.linspace(0, w, cells + 1).astype(int)
    for y0, y1 in zip(ys_edges, ys_edges[1:], strict=False):
        for x0, x1 in zip(xs_edges, xs_edges[1:], strict=False):
            cell = mag[y0:y1, x0:x1]
            if cell.size == 0:
                continue
            k = min(per_cell, cell.size)
            flat = cell.ravel()
            idx = np.argpartition(flat, -k)[-k:]
            idx = idx[flat[idx] > floor]
            cy, cx = np.divmod(idx, cell.shape[1])
            out.append(np.stack([cx + x0, cy + y0], 1))
    pts = np.concatenate(out) if out else np.zeros((0, 2))
    return pts.astype(np.float32)


def _corners(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return np.float64([[[0, 0], [w, 0], [w, h], [0, h]]])


def _overlap(warp: np.ndarray, size: tuple[int, int]) -> float:
    """The share of the reference whose image lies inside the frame."""
    w, h = size
    frame = _corners(size)[0].astype(np.float32)
    ref_in_frame = cv2.perspectiveTransform(_corners(size), warp)[0].astype(np.float32)
    inter, _ = cv2.intersectConvexConvex(frame, ref_in_frame)
    area = abs(cv2.contourArea(ref_in_frame))
    return float(inter / area) if area > 0 else 0.0


def _perspective_px(warp: np.ndarray, size: tuple[int, int]) -> float:
    """How far the homography's image of the field's corners and centre lies from that of the affine
    closest to it (least squares): the perspective alone, whatever the translation and rotation."""
    w, h = size
    src = np.float64([[0, 0], [w, 0], [w, h], [0, h], [w / 2, h / 2]])
    dst = cv2.perspectiveTransform(src[None], warp)[0]
    a = np.concatenate([src, np.ones((5, 1))], 1)
    coef, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return float(np.abs(a @ coef - dst).max())


def valid_mask(reg: Registration, frame_shape: tuple[int, int], border_px: int = 0) -> np.ndarray:
    """Pixels of the reference grid that the frame shows (uint8 0/1), less ``border_px``."""
    h, w = frame_shape
    ones = np.ones((h, w), np.uint8)
    if border_px:
        ones[:border_px], ones[-border_px:], ones[:, :border_px], ones[:, -border_px:] = 0, 0, 0, 0
    return cv2.warpPerspective(ones, reg.warp, reg.size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                               borderValue=0)


def align(frame: np.ndarray, reg: Registration, size: tuple[int, int]) -> np.ndarray:
    """Warp ``frame`` onto the reference grid (``size`` is width, height)."""
    return cv2.warpPerspective(frame, reg.warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def to_frame(image: np.ndarray, reg: Registration, size: tuple[int, int]) -> np.ndarray:
    """Warp an image on the reference grid (an anomaly map) back onto the frame's grid."""
    return cv2.warpPerspective(image, reg.warp, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)


def box_to_frame(box: tuple[float, float, float, float], reg: Registration) -> tuple[float, ...]:
    x1, y1, x2, y2 = box
    pts = cv2.perspectiveTransform(np.float64([[[x1, y1], [x2, y1], [x1, y2], [x2, y2]]]), reg.warp)[0]
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
