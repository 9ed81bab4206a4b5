"""The embedded demo: synthetic boards of one PCB design, some with defects, on a timer trigger."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from edge_inspector.capture.base import BufferStrategy, PartFactory, Source
from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Frame
from edge_inspector.synth.pcb import BoardDesign, make_board, reference_board


class DemoSourceConfig(ConfigModel):
    kind: Literal["demo"] = Field("demo", description="Synthetic PCB boards (the embedded demo).")
    name: str = Field("demo-cam", description="The camera name recorded with each part.")
    design_seed: int = Field(7, description="Which board design (the product).")
    seed: int = Field(1000, description="The first board's seed; board i uses seed + i.")
    width: int = Field(640, ge=128, le=4096, description="Image width in pixels.")
    height: int = Field(640, ge=128, le=4096, description="Image height in pixels.")
    defect_rate: float = Field(0.3, ge=0, le=1, description="Share of boards with defects.")
    max_defects: int = Field(3, ge=1, le=12, description="At most this many defects on a board.")
    interval_ms: float = Field(0.0, ge=0, description="Time between triggers; 0 is as fast as the "
                               "station inspects.")
    buffer: BufferStrategy = Field(BufferStrategy.WAIT, description="What happens when the inspection "
                                   "queue is full.")


class DemoSource(Source):
    def __init__(self, cfg: DemoSourceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.buffer_strategy = cfg.buffer
        self.design = BoardDesign(cfg.design_seed, (cfg.width, cfg.height))

    def board(self, index: int):
        rng = np.random.default_rng([self.cfg.seed, index])
        n = int(rng.integers(1, self.cfg.max_defects + 1)) if rng.random() < self.cfg.defect_rate else 0
        return make_board(self.design, self.cfg.seed + index, defects=n)

    def frames(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        index = 0
        while not stop.is_set():
            trigger = parts.trigger(self.name)
            board = self.board(index)
            truth = [{"kind": d.kind, "box": list(d.box)} for d in board.defects]
            yield trigger.frame(board.image, source=f"demo:{self.cfg.design_seed}:{self.cfg.seed + index}",
                                meta={"truth": truth})
            index += 1
            if self.cfg.interval_ms:
                stop.wait(self.cfg.interval_ms / 1000)


def prepare_product(cfg: DemoSourceConfig, reference: Path, good_dir: Path | None, good: int = 8) -> list[Path]:
    """Write the demo product's reference and known-good images (what a quality engineer would
    collect from the line). Known-good boards use seeds the demo never inspects."""
    design = BoardDesign(cfg.design_seed, (cfg.width, cfg.height))
    written = []
    reference.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(reference), reference_board(design).image)
    written.append(reference)
    if good_dir is not None:
        good_dir.mkdir(parents=True, exist_ok=True)
        for i in range(good):
            path = good_dir / f"good-{i:03d}.png"
            cv2.imwrite(str(path), make_board(design, seed=10_000_000 + i).image)
            written.append(path)
    return written
