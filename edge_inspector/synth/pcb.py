"""A seeded, deterministic generator of bare-PCB images and of the six classic PCB defects.

A :class:`BoardDesign` is one product: traces, pads, vias and text laid out from a design seed. Each
board made from it (:func:`make_board`) may carry defects (open, short, mousebite, spur, spurious
copper, pin-hole) with ground-truth boxes, and passes through a re-capture the way a line makes one
(:mod:`edge_inspector.synth.recapture`: rotation, shift out of the field of view, scale, perspective,
light, defocus, noise, binarisation as in scanned AOI data sets, JPEG).

Ground-truth boxes follow the habit of human annotators: the changed pixels plus a margin, never
smaller than a minimum size. Margins and minimum sizes vary per defect, so that a detector is not
tuned to one convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_inspector.synth.recapture import REFERENCE, Kind, Recapture, move_box, recapture, transform_box

DEFECT_KINDS = ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")

COPPER = 1.0
SUBSTRATE = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    p1: tuple[float, float]
    p2: tuple[float, float]
    width: int

    @property
    def length(self) -> float:
        return float(np.hypot(self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]))

    def point(self, t: float) -> np.ndarray:
        return np.array(self.p1) + t * (np.array(self.p2) - np.array(self.p1))

    def normal(self) -> np.ndarray:
        d = np.array(self.p2) - np.array(self.p1)
        d = d / max(np.linalg.norm(d), 1e-9)
        return np.array([-d[1], d[0]])

    def direction(self) -> np.ndarray:
        d = np.array(self.p2) - np.array(self.p1)
        return d / max(np.linalg.norm(d), 1e-9)


@dataclass(frozen=True, slots=True)
class Defect:
    kind: str
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive), annotation-style (with margin)
    core: tuple[int, int, int, int] | None = None  # the changed pixels alone, without the margin


@dataclass(slots=True)
class Board:
    image: np.ndarray  # uint8, HxW (or HxWx3)
    defects: list[Defect] = field(default_factory=list)
    transform: np.ndarray | None = None  # 3x3: board (golden image) -> this image; None: golden
    # defects cut by the field's edge, less than half in view: a box on one is neither right nor
    # wrong (a defect at the edge is still a defect on a real line), and none is required
    partial: list[Defect] = field(default_factory=list)

    @property
    def defective(self) -> bool:
        return bool(self.defects)


class BoardDesign:
    """One product's copper layout, generated from ``seed``."""

    def __init__(self, seed: int, size: tuple[int, int] = (640, 640)) -> None:
        self.seed = seed
        self.width, self.height = size
        rng = np.random.default_rng([seed, 0xB0A2D])
        self.segments: list[Segment] = []
        self.pads: list[tuple[tuple[int, int], int, bool]] = []  # centre, radius, square
        self.vias: list[tuple[tuple[int, int], int]] = []
        self.texts: list[tuple[str, tuple[int, int], float]] = []
        self._layout(rng)
        self._mask = self._render_mask()

    def _layout(self, rng: np.random.Generator) -> None:
        w, h = self.width, self.height
        pitch = int(rng.integers(34, 46))
        # Manhattan traces on a lattice of lanes, with occasional 45-degree jogs.
        for horizontal in (True, False):
            lanes = range(pitch, (h if horizontal else w) - pitch // 2, pitch)
            for lane in lanes:
                if rng.random() < 0.45:
                    continue
                span = w if horizontal else h
                a = int(rng.integers(pitch // 2, span // 2))
                b = int(rng.integers(a + span // 5, span - pitch // 2))
                width = int(rng.integers(5, 12))
                pts = self._route(rng, lane, a, b, horizontal, pitch)
                for p, q in zip(pts, pts[1:], strict=False):
                    self.segments.append(Segment(p, q, width))
                for end in (pts[0], pts[-1]):
                    self.pads.append(((int(end[0]), int(end[1])), int(rng.integers(9, 15)),
                                      bool(rng.random() < 0.4)))
        for _ in range(int(rng.integers(6, 14))):
            seg = self.segments[int(rng.integers(len(self.segments)))]
            c = seg.point(float(rng.uniform(0.2, 0.8)))
            self.vias.append(((int(c[0]), int(c[1])), int(rng.integers(7, 10))))
        labels = ["R", "C", "U", "J", "D", "Q", "TP"]
        for _ in range(int(rng.integers(2, 5))):
            text = f"{labels[int(rng.integers(len(labels)))]}{int(rng.integers(1, 99))}"
            self.texts.append((text, (int(rng.integers(10, w - 90)), int(rng.integers(30, h - 10))),
                               float(rng.uniform(0.7, 1.1))))

    @staticmethod
    def _route(rng: np.random.Generator, lane: int, a: int, b: int, horizontal: bool,
               pitch: int) -> list[tuple[float, float]]:
        def pt(along: float, across: float) -> tuple[float, float]:
            return (along, across) if horizontal else (across, along)

        pts = [pt(a, lane)]
        if rng.random() < 0.5 and b - a > 3 * pitch:
            # a jog of half a pitch: 45 degrees in, along, 45 degrees out
            j0 = int(rng.integers(a + pitch, b - 2 * pitch))
            off = pitch // 2 * (1 if rng.random() < 0.5 else -1)
            pts += [pt(j0, lane), pt(j0 + abs(off), lane + off)]
            pts += [pt(b, lane + off)]
        else:
            pts.append(pt(b, lane))
        return pts

    def _render_mask(self) -> np.ndarray:
        """Copper coverage in [0, 1] at 4x supersampling, averaged down (anti-aliased edges)."""
        s = 4
        big = np.zeros((self.height * s, self.width * s), np.uint8)
        for seg in self.segments:
            p = (int(seg.p1[0] * s), int(seg.p1[1] * s))
            q = (int(seg.p2[0] * s), int(seg.p2[1] * s))
            cv2.line(big, p, q, 255, seg.width * s, cv2.LINE_8)
            cv2.circle(big, p, seg.width * s // 2, 255, -1)
            cv2.circle(big, q, seg.width * s // 2, 255, -1)
        for (cx, cy), r, square in self.pads:
            if square:
                cv2.rectangle(big, ((cx - r) * s, (cy - r) * s), ((cx + r) * s, (cy + r) * s), 255, -1)
            else:
                cv2.circle(big, (cx * s, cy * s), r * s, 255, -1)
            cv2.circle(big, (cx * s, cy * s), max(2, r // 3) * s, 0, -1)  # drill hole
        for (cx, cy), r in self.vias:
            cv2.circle(big, (cx * s, cy * s), r * s, 255, -1)
            cv2.circle(big, (cx * s, cy * s), max(2, r // 2 - 1) * s, 0, -1)
        for text, (x, y), scale in self.texts:
            cv2.putText(big, text, (x * s, y * s), cv2.FONT_HERSHEY_SIMPLEX, scale * s, 255, 2 * s,
                        cv2.LINE_8)
        small = cv2.resize(big, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return small.astype(np.float32) / 255.0

    @property
    def mask(self) -> np.ndarray:
        return self._mask.copy()

    def render(self) -> np.ndarray:
        """The golden board: no defect, no capture jitter."""
        return _to_gray(self._mask)


def _to_gray(mask: np.ndarray, copper: float = 205.0, substrate: float = 45.0) -> np.ndarray:
    return np.clip(substrate + (copper - substrate) * mask, 0, 255).astype(np.uint8)


# --- defects -----------------------------------------------------------------------------------


def _draw(mask: np.ndarray, value: float, draw) -> np.ndarray:
    """Draw at 4x into a coverage layer and blend it into ``mask``; returns the changed-pixel mask."""
    s = 4
    h, w = mask.shape
    layer = np.zeros((h * s, w * s), np.uint8)
    draw(layer, s)
    cover = cv2.resize(layer, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    before = mask.copy()
    mask[:] = mask * (1 - cover) + value * cover
    return np.abs(mask - before) > 0.25


def _pick_segment(design: BoardDesign, rng: np.random.Generator, min_len: float = 30) -> Segment:
    candidates = [s for s in design.segments if s.length >= min_len]
    return candidates[int(rng.integers(len(candidates)))]


def _ipt(p: np.ndarray, s: int) -> tuple[int, int]:
    return int(round(p[0] * s)), int(round(p[1] * s))


def _open(mask, design, rng):
    seg = _pick_segment(design, rng, 40)
    c = seg.point(float(rng.uniform(0.25, 0.75)))
    gap = float(rng.uniform(3.0, 7.0))
    d, n = seg.direction(), seg.normal()
    half = seg.width / 2 + 2.0

    def draw(layer, s):
        pts = np.array([c - d * gap / 2 - n * half, c + d * gap / 2 - n * half,
                        c + d * gap / 2 + n * half, c - d * gap / 2 + n * half]) * s
        cv2.fillPoly(layer, [pts.round().astype(np.int32)], 255)

    return _draw(mask, SUBSTRATE, draw)


def _short(mask, design, rng):
    for _ in range(200):
        seg = _pick_segment(design, rng, 30)
        c = seg.point(float(rng.uniform(0.2, 0.8)))
        n = seg.normal() * (1 if rng.random() < 0.5 else -1)
        start = c + n * (seg.width / 2 + 1)
        for dist in range(3, 40):  # walk out of this trace until the next copper
            q = start + n * dist
            x, y = int(round(q[0])), int(round(q[1]))
            if not (0 <= x < mask.shape[1] and 0 <= y < mask.shape[0]):
                break
            if mask[y, x] > 0.5:
                if dist < 6:
                    break
                width = float(rng.uniform(2.0, 4.0))

                def draw(layer, s, a=start - n, b=q + n, width=width):
                    cv2.line(layer, _ipt(a, s), _ipt(b, s), 255, max(1, int(width * s)))

                return _draw(mask, COPPER, draw)
    raise RuntimeError("no place for a short on this design")


def _mousebite(mask, design, rng):
    seg = _pick_segment(design, rng, 30)
    c = seg.point(float(rng.uniform(0.2, 0.8)))
    n = seg.normal() * (1 if rng.random() < 0.5 else -1)
    d = seg.direction()
    r = float(rng.uniform(2.5, 4.0))
    bites = int(rng.integers(1, 4))

    def draw(layer, s):
        for i in range(bites):
            p = c + n * (seg.width / 2) + d * (i - (bites - 1) / 2) * r * 1.6
            cv2.circle(layer, _ipt(p, s), int(r * s), 255, -1)

    return _draw(mask, SUBSTRATE, draw)


def _spur(mask, design, rng):
    for _ in range(200):
        seg = _pick_segment(design, rng, 30)
        c = seg.point(float(rng.uniform(0.2, 0.8)))
        n = seg.normal() * (1 if rng.random() < 0.5 else -1)
        length = float(rng.uniform(5.0, 11.0))
        tip = c + n * (seg.width / 2 + length) + seg.direction() * float(rng.uniform(-3, 3))
        probe = c + n * (seg.width / 2 + length + 5)
        x, y = int(round(probe[0])), int(round(probe[1]))
        if not (5 <= x < mask.shape[1] - 5 and 5 <= y < mask.shape[0] - 5) or mask[y, x] > 0.2:
            continue
        width = float(rng.uniform(2.0, 3.5))

        def draw(layer, s, a=c, b=tip, width=width):
            cv2.line(layer, _ipt(a, s), _ipt(b, s), 255, max(1, int(width * s)))

        return _draw(mask, COPPER, draw)
    raise RuntimeError("no place for a spur on this design")


def _spurious_copper(mask, design, rng):
    free = cv2.distanceTransform((mask < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(free > 12)
    i = int(rng.integers(len(xs)))
    c = np.array([xs[i], ys[i]], float)
    axes = (float(rng.uniform(2.5, 6.0)), float(rng.uniform(2.0, 5.0)))
    angle = float(rng.uniform(0, 180))

    def draw(layer, s):
        cv2.ellipse(layer, _ipt(c, s), (int(axes[0] * s), int(axes[1] * s)), angle, 0, 360, 255, -1)

    return _draw(mask, COPPER, draw)


def _pin_hole(mask, design, rng):
    inner = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    r = float(rng.uniform(1.5, 3.0))
    ys, xs = np.nonzero(inner > r + 2.5)
    i = int(rng.integers(len(xs)))
    c = np.array([xs[i], ys[i]], float)

    def draw(layer, s):
        cv2.circle(layer, _ipt(c, s), int(r * s), 255, -1)

    return _draw(mask, SUBSTRATE, draw)


_DEFECTS = {"open": _open, "short": _short, "mousebite": _mousebite, "spur": _spur,
            "spurious_copper": _spurious_copper, "pin_hole": _pin_hole}


def _annotation_box(changed: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(changed)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    margin = int(rng.integers(3, 9))
    min_size = int(rng.integers(16, 29))
    x1, y1, x2, y2 = x1 - margin, y1 - margin, x2 + margin, y2 + margin
    for lo, hi in ((0, 2), (1, 3)):
        box = [x1, y1, x2, y2]
        grow = min_size - (box[hi] - box[lo])
        if grow > 0:
            box[lo] -= grow // 2
            box[hi] += grow - grow // 2
        x1, y1, x2, y2 = box
    h, w = changed.shape
    return max(0, x1), max(0, y1), min(w, x2), min(h, y2)


# --- capture ------------------------------------------------------------------------------------


def render(mask: np.ndarray, kind: str = "gray") -> np.ndarray:
    """The board as a camera would see it under even light: grey, colour (copper on a green mask), or
    binarised as a scanned AOI template is."""
    if kind == "binary":  # a scanned template: a fixed threshold half-way
        return np.where(mask >= 0.5, 255, 0).astype(np.uint8)
    if kind != "color":
        return _to_gray(mask)
    m = mask[..., None]
    substrate, copper = np.float32([40, 90, 30]), np.float32([90, 170, 200])  # BGR
    return np.clip(substrate + (copper - substrate) * m, 0, 255).astype(np.uint8)


def make_board(design: BoardDesign, seed: int, defects: int | list[str] = 0,
               jitter: Recapture | None = Recapture(), kind: Kind | None = None) -> Board:
    """A board of ``design``: ``defects`` is a count (kinds drawn at random) or a list of kinds.

    ``jitter`` is the re-capture (:mod:`edge_inspector.synth.recapture`; None: the golden image, as
    rendered); ``kind`` is gray, binary or color (None: a re-captured board is
    binarised one time in four, else grey; a golden one is grey)."""
    rng = np.random.default_rng([design.seed, seed, 0x5EED])
    kinds = defects if isinstance(defects, list) else [
        DEFECT_KINDS[int(i)] for i in rng.integers(0, len(DEFECT_KINDS), int(defects))]
    mask = design.mask
    truth: list[Defect] = []
    occupied = np.zeros(mask.shape, np.uint8)
    for defect in kinds:
        for _ in range(20):  # keep defects apart, as separate annotations
            trial = mask.copy()
            changed = _DEFECTS[defect](trial, design, rng)
            if not changed.any():
                continue
            box = _annotation_box(changed, rng)
            x1, y1, x2, y2 = box
            if occupied[max(0, y1 - 8):y2 + 8, max(0, x1 - 8):x2 + 8].any():
                continue
            mask[:] = trial
            occupied[y1:y2, x1:x2] = 1
            ys, xs = np.nonzero(changed)
            truth.append(Defect(defect, box, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
            break
    if kind is None:
        kind = "binary" if jitter is not None and rng.random() < 0.25 else "gray"
    if jitter is None:
        return Board(image=render(mask, kind), defects=truth)
    image, m = recapture(render(mask, kind), rng, jitter, kind)
    defects, partial = moved_truth(truth, m, image.shape)
    return Board(image=image, defects=defects, transform=m, partial=partial)


VIEW_BORDER_PX = 4  # a defect must lie half inside the frame less this to be required


def moved_truth(truth: list[Defect], m: np.ndarray, shape: tuple[int, ...]
                ) -> tuple[list[Defect], list[Defect]]:
    """The defects as a capture through the homography ``m`` shows them: those in view (half of
    their changed pixels' box inside the frame less its outermost VIEW_BORDER_PX) and those cut by
    the field's edge (some of their changed pixels in the frame, less than half in view)."""
    seen: list[Defect] = []
    cut: list[Defect] = []
    for d in truth:
        moved, in_view = _moved(d, m, shape)
        if moved is not None:
            (seen if in_view else cut).append(moved)
    return seen, cut


def _moved(d: Defect, m: np.ndarray, shape: tuple[int, ...]) -> tuple[Defect | None, bool]:
    """The defect moved into the frame (None when none of its changed pixels is in it) and whether
    it is in view (half of its changed pixels' box inside the frame less VIEW_BORDER_PX)."""
    h, w = shape[:2]
    cx1, cy1, cx2, cy2 = transform_box(d.core or d.box, m)
    box = move_box(d.box, m, shape, min_visible=0.0)
    if box is None or min(cx2, w) <= max(cx1, 0) or min(cy2, h) <= max(cy1, 0):
        return None, False
    b = VIEW_BORDER_PX
    ix = max(0.0, min(cx2, w - b) - max(cx1, b))
    iy = max(0.0, min(cy2, h - b) - max(cy1, b))
    in_view = ix * iy >= 0.5 * max(cx2 - cx1, 1) * max(cy2 - cy1, 1)
    return Defect(d.kind, box, (int(cx1), int(cy1), int(cx2), int(cy2))), in_view


def reference_board(design: BoardDesign, kind: Kind = "gray") -> Board:
    """The product's reference image as a quality engineer captures it: a good board, centred and
    square to the camera under even light (:data:`~edge_inspector.synth.recapture.REFERENCE`)."""
    return make_board(design, 0, jitter=REFERENCE, kind=kind)
