"""POST /api/v1/inspect: one uploaded image through the live station's configuration.

The stages come from ``stages.build_stages`` (the one builder) with the config in force, built on
first use and again after a reload changed that config; they are the worker's twins, not the
worker's own, so an upload never waits for a part nor a part for an upload (one upload at a time).
The result is ``Inspection.to_json()``, the same JSON as ``edge-inspector inspect --json``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import structlog

from edge_inspector.capture.base import PartFactory
from edge_inspector.errors import EdgeInspectorError, ImageError
from edge_inspector.imageio import DEFAULT_MAX_PIXELS, decode_image

log = structlog.get_logger(__name__)


class BadUpload(ValueError):
    """The upload cannot be inspected: the API answers 4xx with this reason."""


class UploadInspector:
    def __init__(self, live_cfg: Callable[[], Any], build: Callable[[Any], Any]) -> None:
        self._live_cfg = live_cfg
        self._build = build  # stages.build_stages
        self._stages = None
        self._fingerprint: str | None = None
        self._lock = threading.Lock()
        self._parts = PartFactory(deadline_s=math.inf, run_tag="api")

    def _stages_for(self, cfg):
        fingerprint = cfg.fingerprint()
        if self._stages is None or fingerprint != self._fingerprint:
            old, self._stages = self._stages, None
            if old is not None:
                old.close()
            self._stages = self._build(cfg)
            self._fingerprint = fingerprint
            log.info("api_inspect_stages_built", config=fingerprint)
        return self._stages

    def inspect(self, image: bytes, name: str, reference: bytes | None = None,
                reference_name: str = "reference") -> dict[str, Any]:
        cfg = self._live_cfg()
        max_pixels = getattr(cfg.capture, "max_pixels", DEFAULT_MAX_PIXELS)
        try:
            frame_image = decode_image(image, name, max_pixels)
            ref = decode_image(reference, reference_name, max_pixels) if reference is not None else None
        except (ImageError, EdgeInspectorError) as exc:
            raise BadUpload(str(exc)) from exc
        if ref is None and cfg.regions.reference is None and getattr(cfg.regions, "good_images", None) is None:
            raise BadUpload("the station's config has no regions.reference: upload a reference too")
        with self._lock:
            stages = self._stages_for(cfg)
            trigger = self._parts.trigger("api")
            frame = trigger.frame(frame_image, source=name, reference=ref)
            return stages.inspector.inspect(frame).to_json()

    def close(self) -> None:
        with self._lock:
            if self._stages is not None:
                self._stages.close()
                self._stages = None
