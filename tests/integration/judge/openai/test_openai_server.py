"""The remote judge against a real OpenAI-compatible server (llama.cpp's llama-server on the tiny
Qwen2.5-VL with its vision tower as mmproj, see conftest.py). Some tests leave the prompt's images
out (text-only prompts) where the images do not matter; a server started without the vision tower
shows what the station does when the server refuses a request."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import edge_inspector.judge.vlm.judge as vlm_judge
from edge_inspector.envelope import Box, Frame, MapSummary, Regions
from edge_inspector.errors import JudgeError, JudgeTimeout
from edge_inspector.judge import build_judge
from edge_inspector.judge.openai.config import OpenAIJudgeConfig
from edge_inspector.judge.vlm.generation import DeadlineGuard
from edge_inspector.judge.vlm.prompt import ImagePart, Prompt

REPO = Path(__file__).resolve().parents[4]
RECIPE = REPO / "configs/recipes/pcb.yaml"


def _text_only(prompt: Prompt) -> Prompt:
    keep = lambda segs: tuple(s for s in segs if not isinstance(s, ImagePart))  # noqa: E731
    return Prompt(keep(prompt.prefix), keep(prompt.suffix), prompt.n_regions, prompt.form, prompt.answer_prefix)


@pytest.fixture
def text_only(monkeypatch):
    """The judge's prompts without their images (the tiny server has no vision tower)."""
    original = vlm_judge.build_prompt
    monkeypatch.setattr(vlm_judge, "build_prompt", lambda *a, **kw: _text_only(original(*a, **kw)))


def _judge(server, **kw):
    cfg = OpenAIJudgeConfig(base_url=server.base_url, model="tiny", recipe=RECIPE,
                            cascade={"enabled": False}, seed=kw.pop("seed", 1), **kw)
    return build_judge(cfg, regions_threshold=1.0)


def _part(deadline_s: float = 30.0):
    now = time.monotonic()
    frame = Frame("p-1", 1, "cam", now, time.time(), now + deadline_s, np.full((64, 64), 120, np.uint8))
    regions = Regions(score=3.0, boxes=(Box(0, 0, 8, 8, 3.0),), summary=MapSummary(3.0, 0.1, 3.0, 3),
                      model="regions:1", crops=(np.zeros((16, 16), np.uint8),))
    return frame, regions


def _generate(judge, votes: int, deadline_s: float = 30.0):
    frame, regions = _part()
    prompt = _text_only(vlm_judge.build_prompt(judge.recipes.recipe, frame.image, regions.crops, regions.boxes,
                                               judge.recipes.references))
    return judge.engine.run(prompt, votes, DeadlineGuard(time.monotonic() + deadline_s))


def test_k_votes_come_back_as_n_choices_of_one_request(llama_server):
    judge = _judge(llama_server, votes=5)
    gen = _generate(judge, 5)
    assert len(gen.texts) == 5
    assert all(t.startswith("defective:") for t in gen.texts)
    assert gen.prefill_tokens > 0 or gen.prefix_hit


def test_p_defective_from_the_decision_token_logprobs_is_a_probability(llama_server):
    judge = _judge(llama_server, votes=0)
    gen = _generate(judge, 0)
    assert gen.texts == ()
    assert 0.0 <= gen.p_logit <= 1.0
    # the tiny model was taught to answer yes or no after "defective:": the decision is among the top
    assert 0.0 < gen.decision_mass <= 1.0


def test_a_full_verdict_from_the_server_with_images(llama_server):
    judge = _judge(llama_server, votes=5)
    frame, regions = _part()
    try:
        verdict = judge.judge(frame, regions, frame.deadline_mono)
    except JudgeError as exc:  # too few parseable answers from a random tiny model: the fail-safe
        assert "could be parsed" in str(exc)
        return
    assert verdict.decided_by == "vlm" and 0.0 <= verdict.p_defective <= 1.0
    assert len(verdict.votes) == 5 and verdict.model.startswith("openai:tiny@")
    assert verdict.defective == (verdict.p_defective >= 0.5)


def test_garbage_answers_are_invalid_votes_never_a_pass(llama_server, text_only):
    # a grammar makes the real model answer something that is not a decision
    judge = _judge(llama_server, votes=4, extra_body={"grammar": 'root ::= " maybe, hard to say"'})
    gen = _generate(judge, 4)
    assert len(gen.texts) == 4 and all(t == "defective: maybe, hard to say" for t in gen.texts)
    frame, regions = _part()
    with pytest.raises(JudgeError, match="only 0 of 4 answers could be parsed"):
        judge.judge(frame, regions, frame.deadline_mono)


def test_a_request_the_server_refuses_is_a_judge_error_with_its_reason(start_server):
    judge = _judge(start_server(vision=False), votes=2)  # images to a server without a vision tower
    frame, regions = _part()
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match="answered HTTP 5.*image") as info:
        judge.judge(frame, regions, frame.deadline_mono)
    assert not isinstance(info.value, JudgeTimeout)
    assert time.monotonic() - t0 < 20.0


def test_a_deadline_shorter_than_the_answer_is_a_timeout_promptly(start_server, text_only):
    server = start_server(ctx=32768, slots=4)
    # 4 answers of 6000 tokens each that ignore the end token: thousands of steps, far past 0.3 s
    judge = _judge(server, votes=4, extra_body={"ignore_eos": True, "max_tokens": 6000})
    frame, regions = _part(deadline_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(JudgeTimeout, match="deadline"):
        judge.judge(frame, regions, frame.deadline_mono)
    assert time.monotonic() - t0 < 10.0  # returned near the deadline, not after the answer


def test_a_server_that_went_down_is_the_fail_safe_reason_at_once(start_server, text_only):
    server = start_server()
    judge = _judge(server, votes=2)
    assert len(_generate(judge, 2).texts) == 2  # up: a connection in the pool
    server.stop()
    frame, regions = _part(deadline_s=30.0)
    t0 = time.monotonic()
    with pytest.raises(JudgeError, match="unreachable") as info:
        judge.judge(frame, regions, frame.deadline_mono)
    assert not isinstance(info.value, JudgeTimeout)
    assert time.monotonic() - t0 < 10.0  # refused at once, far from the 30 s deadline
    judge.close()


def test_the_fixed_part_first_lets_the_server_reuse_its_cache(llama_server):
    judge = _judge(llama_server, votes=2)
    recipe, refs = judge.recipes.recipe, judge.recipes.references
    frame, regions = _part()
    guard = DeadlineGuard(time.monotonic() + 30.0)
    one = _text_only(vlm_judge.build_prompt(recipe, frame.image, regions.crops, regions.boxes, refs))
    two = _text_only(vlm_judge.build_prompt(recipe, frame.image, regions.crops * 2, regions.boxes * 2, refs))
    judge.engine.run(one, 2, guard)
    gen = judge.engine.run(two, 2, guard)  # another part: the same fixed part, another question
    assert gen.prefix_hit and 0 < gen.prefill_tokens < 200  # only the part after the fixed prefix



def test_the_cache_serves_the_fixed_part_with_its_reference_image(llama_server):
    judge = _judge(llama_server, votes=2)
    recipe, refs = judge.recipes.recipe, judge.recipes.references
    assert refs  # the recipe's reference image is in the fixed part
    guard = DeadlineGuard(time.monotonic() + 30.0)
    frames = [np.full((64, 64), v, np.uint8) for v in (100, 160)]  # two parts: two different frames
    gens = [judge.engine.run(vlm_judge.build_prompt(recipe, f, (), (), refs), 2, guard) for f in frames]
    # the second part runs only its frame and question (the whole prompt is about 1000 tokens)
    assert gens[1].prefix_hit and 0 < gens[1].prefill_tokens < 400
    assert all(len(g.texts) == 2 for g in gens)
