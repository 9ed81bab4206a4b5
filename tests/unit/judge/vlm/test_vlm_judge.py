"""The judge around a fake engine: cascade, verdict, invalid votes, deadline, errors, recipe reload."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from edge_inspector.envelope import Box, Frame, MapSummary, Regions
from edge_inspector.errors import JudgeError, JudgeTimeout
from edge_inspector.judge.vlm.config import VlmJudgeConfig
from edge_inspector.judge.vlm.generation import CostModel, DeadlineGuard, Generation
from edge_inspector.judge.vlm.judge import RecipeSource, VlmJudge
from edge_inspector.recipe import Calibration, write_calibration

YES = "defective: yes\ndefect_type: short\nregion: 1\ndescription: a bridge"
NO = "defective: no\ndefect_type: none\nregion: none\ndescription: fine"


class FakeEngine:
    def __init__(self, texts=(YES,) * 5, p_logit=0.8, error: Exception | None = None):
        self.texts, self.p_logit, self.error = tuple(texts), p_logit, error
        self.calls = []

    def run(self, prompt, votes, guard):
        self.calls.append((prompt, votes, guard))
        if self.error:
            raise self.error
        guard.check("generation")
        return Generation(texts=self.texts[:votes], p_logit=self.p_logit, decision_mass=0.9,
                          prefill_tokens=100, prefix_hit=len(self.calls) > 1, timings_ms={"total_ms": 12.0})


def make(recipe_path, engine=None, clock=time.monotonic, **cfg):
    config = VlmJudgeConfig(model_dir=recipe_path.parent, recipe=recipe_path, **cfg)
    engine = engine or FakeEngine()
    return VlmJudge(config, engine, RecipeSource(recipe_path), "fake:0001", clock), engine


def part(score=3.0, crops=1, deadline=None):
    now = time.monotonic()
    frame = Frame("p-1", 1, "cam", now, time.time(), deadline or now + 5, np.zeros((32, 32), np.uint8))
    regions = Regions(score=score, boxes=tuple(Box(0, 0, 8, 8, score) for _ in range(crops)),
                      summary=MapSummary(score, 0.1, score, 3), model="regions:1",
                      crops=tuple(np.zeros((16, 16), np.uint8) for _ in range(crops)))
    return frame, regions


def test_a_defective_verdict(recipe_path):
    judge, engine = make(recipe_path, FakeEngine([YES, YES, YES, NO, "garbage"], p_logit=0.9))
    frame, regions = part()
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert v.decided_by == "vlm" and v.model == "fake:0001"
    assert v.defective and v.defect_type == "short"
    assert len(v.votes) == 5 and [x.defective for x in v.votes] == [True, True, True, False, None]
    assert v.p_defective == pytest.approx(0.5 * (0.9 + 0.75))  # uncalibrated: mean of logit and share
    assert v.confidence == pytest.approx(v.p_defective)
    d = v.details
    assert (d["valid_votes"], d["invalid_votes"], d["vote_share"]) == (4, 1, 0.75)
    assert d["p_logit"] == 0.9 and d["region"] == 1 and d["generation_ms"] == 12.0
    assert d["constrained"] is True  # the default: the votes were masked to the answer form
    prompt, votes, _ = engine.calls[0]
    assert votes == 5 and prompt.n_regions == 1


def test_a_pass_verdict(recipe_path):
    judge, _ = make(recipe_path, FakeEngine([NO] * 5, p_logit=0.1))
    v = judge.judge(*part()[:2], time.monotonic() + 5)
    assert not v.defective and v.defect_type is None and v.confidence == pytest.approx(0.95)


def test_too_many_invalid_votes_is_an_error_never_a_pass(recipe_path):
    judge, _ = make(recipe_path, FakeEngine([NO, NO, "I'm sorry", "", "defective: maybe"], p_logit=0.01))
    with pytest.raises(JudgeError, match="only 2 of 5 answers"):
        judge.judge(*part()[:2], time.monotonic() + 5)


def test_the_demo_answer_defective_none_is_a_pass_not_a_judge_error(recipe_path):
    """The tiny AWQ model in the demo answered this five times; it made 5 of 6 parts NO-READ."""
    none = "defective: none\ndefect_type: none\nregion: none\ndescription: the part looks like the reference"
    judge, _ = make(recipe_path, FakeEngine([none] * 5, p_logit=0.2))
    v = judge.judge(*part()[:2], time.monotonic() + 5)
    assert not v.defective and (v.details["valid_votes"], v.details["vote_share"]) == (5, 0.0)


def test_votes_zero_rests_on_the_logits(recipe_path):
    judge, engine = make(recipe_path, FakeEngine(p_logit=0.3), votes=0)
    v = judge.judge(*part()[:2], time.monotonic() + 5)
    assert v.votes == () and v.p_defective == pytest.approx(0.3) and not v.defective
    assert engine.calls[0][1] == 0


def test_the_calibration_in_the_recipe_is_applied(recipe_path):
    write_calibration(recipe_path, Calibration(w_logit=0.0, w_votes=0.0, bias=3.0, votes=5))
    judge, _ = make(recipe_path, FakeEngine([NO] * 5, p_logit=0.1))
    v = judge.judge(*part()[:2], time.monotonic() + 5)
    assert v.p_defective == pytest.approx(1 / (1 + math.exp(-3.0))) and v.defective
    assert v.details["calibrated"] is True and v.details["p_raw"] == pytest.approx(0.05, abs=0.01)


def test_cascade_passes_low_scores_without_the_vlm(recipe_path):
    write_calibration(recipe_path, Calibration(w_logit=1, w_votes=1, bias=0, votes=5, cascade_pass_below=2.0,
                                               cascade_p_defective=0.004))
    judge, engine = make(recipe_path)
    v = judge.judge(*part(score=1.5)[:2], time.monotonic() + 5)
    assert (v.decided_by, v.defective, v.model) == ("regions", False, "regions:1")
    assert v.p_defective == 0.004 and v.confidence == pytest.approx(0.996)
    assert v.details == {"score": 1.5, "cascade_pass_below": 2.0}
    assert engine.calls == []
    v = judge.judge(*part(score=2.0)[:2], time.monotonic() + 5)  # at the threshold: the VLM decides
    assert v.decided_by == "vlm" and len(engine.calls) == 1


def test_cascade_config_overrides_and_disables(recipe_path):
    judge, engine = make(recipe_path, cascade={"pass_below": 1.0, "p_defective": 0.02})
    v = judge.judge(*part(score=0.5)[:2], time.monotonic() + 5)
    assert v.decided_by == "regions" and v.p_defective == 0.02
    judge, engine = make(recipe_path, cascade={"enabled": False, "pass_below": 1.0})
    assert judge.judge(*part(score=0.5)[:2], time.monotonic() + 5).decided_by == "vlm"
    judge, engine = make(recipe_path)  # no calibration, no override: every part goes to the VLM
    assert judge.cascade_threshold() is None


def test_a_deadline_already_past_raises_timeout_without_calling_the_model(recipe_path):
    judge, engine = make(recipe_path)
    frame, regions = part()
    with pytest.raises(JudgeTimeout):
        judge.judge(frame, regions, time.monotonic() - 0.001)
    assert engine.calls == []


def test_the_engine_gets_the_deadline_with_the_margin(recipe_path):
    judge, engine = make(recipe_path, clock=lambda: 10.0, deadline_margin_ms=50)
    judge.judge(*part()[:2], 10.2)
    guard = engine.calls[0][2]
    assert guard.remaining_s() == pytest.approx(0.15)


def test_engine_timeout_propagates_as_timeout(recipe_path):
    judge, _ = make(recipe_path, FakeEngine(error=JudgeTimeout("generation stopped")))
    with pytest.raises(JudgeTimeout):
        judge.judge(*part()[:2], time.monotonic() + 5)


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), ValueError("bad pixel values")])
def test_other_engine_failures_are_judge_errors(recipe_path, error):
    judge, _ = make(recipe_path, FakeEngine(error=error))
    with pytest.raises(JudgeError, match=str(error)) as err:
        judge.judge(*part()[:2], time.monotonic() + 5)
    assert not isinstance(err.value, JudgeTimeout)


def test_an_edited_recipe_is_reloaded_and_a_broken_one_ignored(recipe_path):
    judge, engine = make(recipe_path)
    judge.judge(*part()[:2], time.monotonic() + 5)
    text = recipe_path.read_text()
    recipe_path.write_text(text.replace("test board", "another board"))
    os.utime(recipe_path, ns=(time.time_ns(), time.time_ns() + 10**9))
    judge.judge(*part()[:2], time.monotonic() + 5)
    assert "Product: another board." in engine.calls[1][0].prefix[0]
    recipe_path.write_text("defects: [")
    os.utime(recipe_path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    judge.judge(*part()[:2], time.monotonic() + 5)  # keeps the last good recipe
    assert "Product: another board." in engine.calls[2][0].prefix[0]


def test_deadline_guard_and_cost_model():
    now = [0.0]
    guard = DeadlineGuard(1.0, margin_s=0.1, clock=lambda: now[0])
    guard.check("step", expected_s=0.5)
    now[0] = 0.6
    with pytest.raises(JudgeTimeout, match="step stopped"):
        guard.check("step", expected_s=0.31)
    costs = CostModel(alpha=0.5)
    assert costs.expect("decode") == 0.0
    costs.observe("prefill_token", 1.0, units=100)
    costs.observe("prefill_token", 3.0, units=100)
    assert costs.expect("prefill_token", 10) == pytest.approx(0.2)


def test_importing_the_judge_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, edge_inspector.judge.vlm, edge_inspector.judge.vlm.judge; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_judge_shared_by_cameras_prompts_each_part_with_its_cameras_recipe(recipe_path):
    from dataclasses import replace

    from edge_inspector.judge.vlm.judge import camera_recipe_sources

    other = recipe_path.parent / "bottom.yaml"
    other.write_text(recipe_path.read_text().replace("product:", "product: BOTTOM BOARD", 1)
                     if "product:" in recipe_path.read_text() else recipe_path.read_text())
    config = VlmJudgeConfig(model_dir=recipe_path.parent, recipe=recipe_path)
    default = RecipeSource(recipe_path)
    by_camera = camera_recipe_sources(default, {"top": recipe_path, "bottom": other})
    assert by_camera["top"] is default and by_camera["bottom"] is not default  # one source per file
    engine = FakeEngine()
    judge = VlmJudge(config, engine, default, "fake:0001", time.monotonic, by_camera)
    frame, regions = part()
    judge.judge(replace(frame, camera="top"), regions, frame.deadline_mono)
    judge.judge(replace(frame, camera="bottom"), regions, frame.deadline_mono)
    top_text, bottom_text = (str(p.prefix[0]) for p, _, _ in engine.calls)
    assert "BOTTOM BOARD" in bottom_text and "BOTTOM BOARD" not in top_text
    assert judge.recipe_version_for("bottom") != judge.recipe_version_for("top") == judge.recipe_version
