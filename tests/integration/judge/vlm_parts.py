"""Helpers the VLM integration tests share: a judge config for the tiny checkpoints, a part with
crops, and a counter of the model's forward calls."""

from __future__ import annotations

import time
from pathlib import Path

from edge_inspector.envelope import Box, Frame, MapSummary, Regions
from edge_inspector.judge.vlm import VlmJudgeConfig
from edge_inspector.synth.pcb import BoardDesign, make_board

SMALL = {"frame_max_pixels": 224 * 224, "crop_max_pixels": 112 * 112, "reference_max_pixels": 224 * 224}


def config(model_dir: Path, recipe: Path, **kw) -> VlmJudgeConfig:
    return VlmJudgeConfig(model_dir=model_dir, recipe=recipe, seed=0, device="cpu", **{**SMALL, **kw})


def part(seed: int = 0, crops: int = 2, deadline_s: float = 30.0) -> tuple[Frame, Regions]:
    board = make_board(BoardDesign(seed=1), seed=seed, defects=1)
    img = board.image
    now = time.monotonic()
    frame = Frame(f"p-{seed}", seed, "cam", now, time.time(), now + deadline_s, img)
    boxes = tuple(Box(10 * i, 10 * i, 10 * i + 64, 10 * i + 64, 3.0) for i in range(crops))
    regions = Regions(score=3.0, boxes=boxes, summary=MapSummary(3.0, 0.1, 2.0, 50), model="regions:t",
                      crops=tuple(img[b.y1:b.y2, b.x1:b.x2] for b in boxes))
    return frame, regions


def count_forwards(model) -> list[tuple[int, int]]:
    """Wrap the model's forward to record (batch, new tokens) of each call."""
    calls: list[tuple[int, int]] = []
    original = model.forward

    def forward(*args, input_ids=None, **kwargs):
        calls.append(tuple(input_ids.shape))
        return original(*args, input_ids=input_ids, **kwargs)

    model.forward = forward
    return calls
