"""Parts that wait together (a multi-camera station) go to the server as concurrent requests."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge_inspector.envelope import Box, Frame, MapSummary, Regions, Verdict
from edge_inspector.errors import JudgeError
from edge_inspector.judge.openai.config import OpenAIJudgeConfig
from edge_inspector.judge.openai.judge import OpenAIJudge
from edge_inspector.judge.vlm.generation import Generation
from edge_inspector.judge.vlm.judge import RecipeSource

YES = "defective: yes\ndefect_type: short\nregion: 1\ndescription: a bridge"


class Concurrent:
    """Answers only when two requests are in flight at once (a barrier of 2), or fails one camera."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=5)
        self.client = type("C", (), {"close": lambda self: None})()

    def run(self, prompt, votes, guard):
        self.barrier.wait()  # raises BrokenBarrierError when the requests come one after the other
        if "BROKEN" in str(prompt.prefix[0]):  # the recipe of the camera whose parts fail
            raise JudgeError("HTTP 500 from the server")
        return Generation(texts=(YES,) * votes, p_logit=0.9, decision_mass=0.9, prefill_tokens=10,
                          prefix_hit=True, timings_ms={"total_ms": 1.0})


def part(camera: str) -> tuple[Frame, Regions]:
    now = time.monotonic()
    frame = Frame(f"p-{camera}", 1, camera, now, time.time(), now + 10, np.zeros((32, 32), np.uint8))
    regions = Regions(score=3.0, boxes=(Box(0, 0, 8, 8, 3.0),), summary=MapSummary(3.0, 0.1, 3.0, 3),
                      model="regions:1", crops=(np.zeros((16, 16), np.uint8),))
    return frame, regions


def test_two_waiting_parts_are_two_concurrent_requests_and_each_fails_alone(recipe_path):
    config = OpenAIJudgeConfig(base_url="http://judge:8000/v1", model="m", recipe=recipe_path, votes=3)
    broken = recipe_path.parent / "broken.yaml"
    broken.write_text(recipe_path.read_text().replace("product:", "product: BROKEN", 1))
    default = RecipeSource(recipe_path)
    judge = OpenAIJudge(config, Concurrent(), default, "openai:m@judge",  # type: ignore[arg-type]
                        camera_recipes={"side": RecipeSource(broken)})
    try:
        got = judge.judge_many([part("top"), part("bottom")])
        assert all(isinstance(v, Verdict) and v.defective for v in got), got
        got = judge.judge_many([part("side"), part("top")])
        assert isinstance(got[0], JudgeError) and "HTTP 500" in str(got[0]) and isinstance(got[1], Verdict)
    finally:
        judge.close()
