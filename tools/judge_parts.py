"""Parts for the judge tools (parity, calibration, benchmark): a labelled manifest read into frames
and regions, or synthetic bare-PCB parts when there is no recording.

Manifest (JSON lines, paths relative to the manifest file)::

    {"image": "parts/0001.png", "label": "good"}
    {"image": "parts/0002.png", "label": "short", "reference": "ref/0002.png",
     "score": 4.2, "boxes": [[120, 80, 180, 140]]}

``label`` is ``good`` or ``defective`` or a defect type (which counts as defective); ``score`` and
``boxes`` are the regions stage's anomaly score and boxes as the station recorded them (the store
keeps both per inspection); without them the part is judged on the whole frame and the cascade is
not fitted. ``reference`` is an optional per-part one-shot reference.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.envelope import Box, Frame, MapSummary, Regions  # noqa: E402
from edge_inspector.imageio import load_image  # noqa: E402
from edge_inspector.regions.boxes import pad_box  # noqa: E402

CROP_SIDE = 448


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    image: np.ndarray
    defective: bool
    score: float | None
    boxes: tuple[Box, ...]
    reference: np.ndarray | None = None

    def frame(self, deadline_s: float = 3600.0) -> Frame:
        now = time.monotonic()
        return Frame(part_id=self.name, seq=0, camera="manifest", trigger_mono=now, trigger_wall=time.time(),
                     deadline_mono=now + deadline_s, image=self.image, source=self.name,
                     reference=self.reference)

    def regions(self) -> Regions:
        score = self.score if self.score is not None else float("inf")
        return Regions(score=score, boxes=self.boxes, summary=MapSummary(score, 0.0, score, 0), model="manifest",
                       crops=tuple(zoom(self.image, b) for b in self.boxes))


def zoom(image: np.ndarray, box: Box, margin: int = 16, side: int = CROP_SIDE) -> np.ndarray:
    """The box with a margin, upscaled so that its longer side is ``side`` pixels."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = pad_box((box.x1, box.y1, box.x2, box.y2), margin, 32, w, h)
    crop = image[y1:y2, x1:x2]
    s = side / max(crop.shape[:2])
    return cv2.resize(crop, (round(crop.shape[1] * s), round(crop.shape[0] * s)), interpolation=cv2.INTER_CUBIC)


def read_manifest(path: Path) -> list[Part]:
    base = path.parent
    parts = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
            label = str(item["label"]).lower()
            boxes = tuple(Box(*map(int, b[:4]), score=float(item.get("score") or 0.0))
                          for b in item.get("boxes") or [])
            ref = load_image(base / item["reference"]) if item.get("reference") else None
            parts.append(Part(item["image"], load_image(base / item["image"]), label != "good",
                              item.get("score"), boxes, ref))
        except (KeyError, TypeError, ValueError) as exc:
            raise SystemExit(f"{path}:{i}: {type(exc).__name__}: {exc}") from exc
    return parts


def synthetic_parts(n: int, seed: int = 0, size: int = 640) -> list[Part]:
    """Bare-PCB parts of the recipe's design (seed 1): every other one with a defect whose true box is
    its region (anomaly score 3..6); good parts get one spurious low-score region (0.5..1.5)."""
    from edge_inspector.synth.pcb import BoardDesign, make_board

    design = BoardDesign(seed=1, size=(size, size))
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n):
        bad = i % 2 == 1
        board = make_board(design, seed=seed * 1000 + i, defects=1 if bad else 0)
        if bad and board.defects:
            boxes = tuple(Box(*d.box, score=float(rng.uniform(3, 6))) for d in board.defects)
        else:
            x, y = (int(v) for v in rng.integers(0, size - 64, 2))
            boxes = (Box(x, y, x + 64, y + 64, score=float(rng.uniform(0.5, 1.5))),)
        parts.append(Part(f"synthetic-{seed}-{i:04d}", board.image, bad and bool(board.defects),
                          max(b.score for b in boxes), boxes))
    return parts
