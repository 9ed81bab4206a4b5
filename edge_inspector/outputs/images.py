"""Reject images with box overlays under the data directory, pruned by age and total size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import structlog
from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Inspection, Outcome

log = structlog.get_logger(__name__)


class RejectImagesConfig(ConfigModel):
    keep: bool = Field(True, description="Save an image of every REJECT and NO-READ with its boxes.")
    max_age_days: float = Field(30.0, gt=0, description="Images older than this are deleted.")
    max_total_mb: float = Field(2048.0, gt=0, description="The images' total size is kept under this.")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of the saved images.")
    prune_every: int = Field(50, ge=1, description="Prune after this many saved images.")


def heat_overlay(out: np.ndarray, anomaly_map: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Blend the anomaly map (in tolerance units) over a BGR image as a heat map: transparent where
    the map is under half the threshold, red at twice the threshold and above."""
    a = anomaly_map
    if a is None or a.ndim != 2 or a.size == 0:
        return out
    if a.shape != out.shape[:2]:
        a = cv2.resize(a.astype(np.float32), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
    level = np.clip(np.nan_to_num(a.astype(np.float32)) / (2.0 * threshold), 0.0, 1.0)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (np.clip((level - 0.25) / 0.25, 0.0, 1.0) * 0.45)[:, :, None]
    return (out * (1.0 - alpha) + heat * alpha).astype(np.uint8)


def overlay(image: np.ndarray, inspection: Inspection) -> np.ndarray:
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    if inspection.regions is not None and inspection.regions.anomaly_map is not None:
        out = heat_overlay(out, inspection.regions.anomaly_map)
    if inspection.regions:
        for i, b in enumerate(inspection.regions.boxes):
            cv2.rectangle(out, (b.x1, b.y1), (b.x2 - 1, b.y2 - 1), (0, 0, 255), 2)
            cv2.putText(out, f"{i} {b.score:.1f}", (b.x1, max(12, b.y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, (0, 255, 255), 1, cv2.LINE_AA)
    d = inspection.decision
    cv2.putText(out, f"{d.outcome} {d.reason} {inspection.frame.part_id}", (6, 18),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    return out


class RejectImages:
    def __init__(self, cfg: RejectImagesConfig, root: Path) -> None:
        self.cfg = cfg
        self.root = Path(root)
        self.saved = 0
        self.skipped_disk_full = 0

    def save(self, inspection: Inspection) -> str | None:
        frame = inspection.frame
        if not self.cfg.keep or frame.image is None or inspection.decision.outcome is Outcome.PASS:
            return None
        day = time.strftime("%Y-%m-%d", time.localtime(frame.trigger_wall))
        path = self.root / day / f"{frame.part_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", overlay(frame.image, inspection),
                               [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            return None
        try:
            path.write_bytes(buf.tobytes())
        except OSError as exc:  # disk full: the decision goes on without its image
            self.skipped_disk_full += 1
            log.warning("reject_image_not_saved", part_id=frame.part_id, error=str(exc))
            return None
        self.saved += 1
        if self.saved % self.cfg.prune_every == 0:
            self.prune()
        return str(path)

    def prune(self, now: float | None = None) -> int:
        """Delete images older than max_age_days, then the oldest until under max_total_mb."""
        if not self.root.is_dir():
            return 0
        now = time.time() if now is None else now
        files = []
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                p = Path(dirpath) / n
                try:
                    st = p.stat()
                except OSError:
                    continue
                files.append((st.st_mtime, st.st_size, p))
        files.sort()
        total = sum(f[1] for f in files)
        cap = self.cfg.max_total_mb * 1024 * 1024
        removed = 0
        for mtime, size, p in files:
            if now - mtime <= self.cfg.max_age_days * 86400 and total <= cap:
                break
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        if removed:
            log.info("reject_images_pruned", removed=removed, total_mb=round(total / 1048576, 1))
        return removed
