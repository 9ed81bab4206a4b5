"""Reject images with box overlays under the data directory, and the guard that stops saving them
when the disk is nearly full. Pruning them (by age and total size, with their rows) belongs to the
retention service (``service/prune.py``), one owner on its own thread."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import structlog
from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Inspection, Outcome

log = structlog.get_logger(__name__)


class RejectImagesConfig(ConfigModel):
    keep: bool = Field(True, description=(
        "Save an image of every REJECT and NO-READ with its boxes (and of the passes worth a review)."))
    review_confidence: float = Field(0.9, ge=0, le=1, description=(
        "Also save the image of a PASS whose confidence is under this, or whose defective vote share is "
        "within [review_split, 1 - review_split]: the review queue's uncertain passes, so a person can "
        "look at them (0: none)."))
    review_split: float = Field(0.2, gt=0, le=0.5, description="See review_confidence.")
    audit_share: float = Field(0.05, ge=0, le=1, description=(
        "Also save the image of this share of the other passes, picked by a hash of the part id: the "
        "review queue's audit sample (`edge-inspector review list`; 0: none)."))
    keep_frame: bool = Field(True, description=(
        "Beside each saved image, also the frame as the judge saw it (lossless PNG, no overlay): what "
        "`edge-inspector dataset export` trains on. Pruned with the images."))
    max_age_days: float = Field(30.0, gt=0, description="Images older than this are deleted.")
    max_total_mb: float = Field(2048.0, gt=0, description="The images' total size is kept under this.")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of the saved images.")
    prune_every: int = Field(50, ge=1, description="Prune (retention) after this many saved images, "
                             "besides service.retention.prune_every_s.")


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


FRAME_SUFFIX = ".frame.png"


def audit_draw(part_id: str) -> float:
    """A number in [0, 1) fixed by the part id: the audit sample is the same parts on every run."""
    return int.from_bytes(hashlib.sha256(part_id.encode()).digest()[:8], "big") / 2.0 ** 64


def pass_review(part_id: str, confidence: float | None, vote_share: float | None, low_confidence: float,
                split: float, audit_share: float) -> str | None:
    """Why a PASS is worth a person's look: ``uncertain`` (confidence under ``low_confidence``, or a
    defective vote share within [split, 1 - split]), ``audit`` (its id's draw under ``audit_share``),
    or None. The review queue and the image saver decide with this one rule."""
    if (confidence is not None and confidence < low_confidence) or (
            vote_share is not None and split <= vote_share <= 1.0 - split):
        return "uncertain"
    return "audit" if audit_draw(part_id) < audit_share else None


def frame_path_for(image_path: str | Path) -> Path:
    """Where the plain frame of a saved (overlaid) image is: ``<part>.frame.png`` beside it."""
    p = Path(image_path)
    return p.with_name(p.stem + FRAME_SUFFIX)


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


def worth_saving(inspection: Inspection, cfg: RejectImagesConfig) -> bool:
    """Every REJECT and NO-READ; a PASS that the review queue will list (:func:`pass_review`)."""
    if inspection.decision.outcome is not Outcome.PASS:
        return True
    v = inspection.verdict
    share = v.details.get("vote_share") if v is not None else None
    share = share if isinstance(share, int | float) else None
    return pass_review(inspection.frame.part_id, v.confidence if v is not None else None, share,
                       cfg.review_confidence, cfg.review_split, cfg.audit_share) is not None


def safe_name(name: str) -> str:
    """A folder name from a camera name (kept to letters, digits, ``-_.``, never ``.``/``..``)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:64]
    return "-" if name in ("", ".", "..") else name


class RejectImages:
    """Saves the image of every REJECT and NO-READ with its boxes, and of the passes worth a review
    (uncertain, the audit sample); ``cfg`` is read per image (a reload changes it through
    ``live_cfg``)."""

    def __init__(self, cfg: RejectImagesConfig, root: Path,
                 live_cfg: Callable[[], RejectImagesConfig] | None = None, per_camera: bool = False) -> None:
        self._cfg = cfg
        self.per_camera = per_camera  # path under the part's camera (and view): a multi-camera station
        self._live_cfg = live_cfg
        self.root = Path(root)
        self.saved = 0
        self.skipped_disk_full = 0

    @property
    def cfg(self) -> RejectImagesConfig:
        return self._live_cfg() if self._live_cfg is not None else self._cfg

    def save(self, inspection: Inspection) -> str | None:
        frame = inspection.frame
        cfg = self.cfg
        if not cfg.keep or frame.image is None or not worth_saving(inspection, cfg):
            return None
        day = time.strftime("%Y-%m-%d", time.localtime(frame.trigger_wall))
        folder = self.root / day
        if self.per_camera:  # a multi-camera station: <day>/<camera>[/<view>]/<part id>.jpg
            for name in (frame.camera, frame.meta.get("view")):
                folder = folder / safe_name(str(name)) if name else folder
        path = folder / f"{frame.part_id}.jpg"  # the file's stem is the part id (retention)
        ok, buf = cv2.imencode(".jpg", overlay(frame.image, inspection), [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if cfg.keep_frame:  # first: a row whose image exists has its frame too
                ok, png = cv2.imencode(".png", frame.image)
                if ok:
                    frame_path_for(path).write_bytes(png.tobytes())
            path.write_bytes(buf.tobytes())
        except OSError as exc:  # disk full: the decision goes on without its image
            self.skipped_disk_full += 1
            log.warning("reject_image_not_saved", part_id=frame.part_id, error=str(exc))
            return None
        self.saved += 1
        return str(path)


def free_mb(path: Path) -> float:
    """Free space for an unprivileged writer on the filesystem of ``path`` (or its nearest parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 1048576


class DiskGuard:
    """Wraps the reject images: below ``min_free_mb`` free, ``save`` keeps nothing and counts it.
    Measured at most every ``every_s`` by ``save`` (the worker) and by the retention service."""

    def __init__(self, inner: RejectImages, root: Path, min_free_mb: float, every_s: float = 5.0,
                 measure: Callable[[Path], float] = free_mb) -> None:
        self.inner = inner
        self.root = Path(root)
        self.min_free_mb = min_free_mb
        self.every_s = every_s
        self.measure = measure
        self.low = False
        self.free_mb: float | None = None
        self.skipped_disk_low = 0
        self.checked_mono = float("-inf")

    @property
    def cfg(self) -> RejectImagesConfig:
        return self.inner.cfg

    @property
    def saved(self) -> int:
        return self.inner.saved

    def refresh(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.checked_mono = now
        try:
            self.free_mb = self.measure(self.root)
        except OSError as exc:
            log.warning("disk_check_failed", path=str(self.root), error=str(exc))
            return self.low
        low = self.free_mb < self.min_free_mb
        if low and not self.low:
            log.error("disk_nearly_full", path=str(self.root), free_mb=round(self.free_mb, 1),
                      min_free_mb=self.min_free_mb, detail="reject images are no longer saved; "
                      "decisions go on")
        elif self.low and not low:
            log.info("disk_space_back", path=str(self.root), free_mb=round(self.free_mb, 1),
                     skipped=self.skipped_disk_low)
        self.low = low
        return low

    def save(self, inspection: Inspection) -> str | None:
        now = time.monotonic()
        if now - self.checked_mono >= self.every_s:
            self.refresh(now)
        if self.low:
            if self.cfg.keep and inspection.frame.image is not None and worth_saving(inspection, self.cfg):
                self.skipped_disk_low += 1
            return None
        return self.inner.save(inspection)
