"""What runs after either regions model: SAM refinement of the boxes (when configured) and the zoomed
crops for the judge. Both models' configs include :class:`RefineFields`, so the keys are the same
(``regions.sam_dir``, ``regions.sam.*``, ``regions.zoom.*``) whichever model the product uses."""

from __future__ import annotations

import dataclasses

import structlog
from pydantic import Field

from edge_inspector.config_base import ConfigModel, ConfigPath
from edge_inspector.envelope import Frame, Regions
from edge_inspector.regions.base import RegionFinder
from edge_inspector.regions.sam import SamRefiner, SamSettings
from edge_inspector.regions.zoom import ZoomConfig, zoom

log = structlog.get_logger(__name__)


class RefineFields(ConfigModel):
    sam_dir: ConfigPath | None = Field(None, description="A local SAM checkpoint directory (transformers "
                                       "SamModel). With it, boxes are snapped to the object's boundary by "
                                       "prompting SAM at the anomaly peaks; without it, boxes come from the "
                                       "map. Nothing is downloaded.")
    sam: SamSettings = Field(default_factory=SamSettings, description="How SAM is prompted and its masks "
                             "merged (used when sam_dir is set).")
    zoom: ZoomConfig = Field(default_factory=ZoomConfig, description="The square crops of the best boxes "
                             "that the judge sees.")


class RefinedFinder(RegionFinder):
    """A regions model followed by SAM (optional) and zoom. Other attributes come from the model."""

    def __init__(self, inner: RegionFinder, cfg: RefineFields, sam: SamRefiner | None = None) -> None:
        self.inner = inner
        self.cfg = cfg
        self.sam = sam
        self.threshold = inner.threshold
        self.fingerprint = inner.fingerprint + (f"+{sam.fingerprint}" if sam else "")
        self.sam_failures = 0

    def __getattr__(self, name: str):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def find(self, frame: Frame) -> Regions:
        r = self.inner.find(frame)
        boxes = tuple(sorted(r.boxes, key=lambda b: -b.score))
        if self.sam is not None and boxes and r.anomaly_map is not None:
            try:
                boxes = tuple(self.sam.refine(frame.image, r.anomaly_map, self.threshold, boxes))
            except Exception as exc:  # noqa: BLE001 - a refinement failure keeps the map's boxes
                self.sam_failures += 1
                log.warning("sam_refine_failed", part_id=frame.part_id, error=f"{type(exc).__name__}: {exc}")
        crops = zoom(frame.image, boxes, self.cfg.zoom) if boxes else ()
        return dataclasses.replace(r, boxes=boxes, crops=crops, model=self.fingerprint)


def with_refinement(inner: RegionFinder, cfg: RefineFields) -> RefinedFinder:
    """Wrap a regions model; loads SAM once when ``cfg.sam_dir`` is set (raises StartupError)."""
    sam = SamRefiner(cfg.sam_dir, cfg.sam) if cfg.sam_dir is not None else None
    return RefinedFinder(inner, cfg, sam)
