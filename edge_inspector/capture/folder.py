"""Replay: every image file in a folder is one part, in name order."""

from __future__ import annotations

import threading
import time

import structlog
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from edge_inspector.capture.base import BufferStrategy, PartFactory, Source
from edge_inspector.config_base import ConfigModel, ConfigPath
from edge_inspector.envelope import Frame
from edge_inspector.errors import ImageError, StartupError
from edge_inspector.imageio import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, load_image

log = structlog.get_logger(__name__)


class FolderSourceConfig(ConfigModel):
    kind: Literal["folder"] = Field("folder", description="Replay the images of a folder.")
    name: str = Field("replay", description="The camera name recorded with each part.")
    path: ConfigPath = Field(description="The folder whose images are replayed, in name order.")
    interval_ms: float = Field(0.0, ge=0, description="Time between triggers; 0 replays as fast as "
                               "the station inspects.")
    loop: bool = Field(False, description="Start again at the first image after the last one.")
    buffer: BufferStrategy = Field(BufferStrategy.WAIT, description="What happens when the inspection "
                                   "queue is full (a replay waits).")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, le=2**30, description="An image whose header "
                            "claims more pixels than this is not decoded: the part is a NO-READ "
                            "(unreadable_frame).")


class FolderSource(Source):
    def __init__(self, cfg: FolderSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.buffer_strategy = cfg.buffer
        self.files: list[Path] = []

    def open(self) -> None:
        folder = Path(self.cfg.path)
        if not folder.is_dir():
            raise StartupError(f"capture.path: {folder} is not a folder")
        # every file that looks like an image is a part: a corrupt one becomes a NO-READ, not a skip
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise StartupError(f"capture.path: no images in {folder}")

    def frames(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            for path in self.files:
                if stop.is_set():
                    return
                trigger = parts.trigger(self.name)
                try:
                    image, error = load_image(path, self.cfg.max_pixels), None
                except ImageError as exc:
                    image, error = None, str(exc)
                except Exception as exc:  # noqa: BLE001 - a decoder bug must not end the replay
                    log.error("image_decode_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")
                    image, error = None, f"{path}: {type(exc).__name__}: {exc}"
                yield trigger.frame(image, source=str(path), error=error)
                if self.cfg.interval_ms:
                    stop.wait(self.cfg.interval_ms / 1000)
            if not self.cfg.loop:
                return
            time.sleep(0)
