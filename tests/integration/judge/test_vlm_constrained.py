"""Constrained decoding on the tiny checkpoints: every vote keeps the form (Qwen2.5-VL, its AWQ version,
Qwen3-VL, whose free answers do not parse), the k votes still share one prefill and decode k-wide, and
the engine's constrained greedy answer is transformers' own ``generate`` with the logits processor."""

from __future__ import annotations

import math

import pytest
import torch

from edge_inspector.errors import JudgeError
from edge_inspector.judge.vlm import build
from edge_inspector.judge.vlm.generation import DeadlineGuard
from edge_inspector.judge.vlm.prompt import ANSWER_PREFIX, build_prompt
from tests.integration.judge.vlm_parts import config, count_forwards, part


def in_form(text: str, prompt) -> bool:
    answer = text.removeprefix(ANSWER_PREFIX)
    return any(answer.startswith(h) and "\n" not in answer[len(h):].rstrip("\n") for h in prompt.form.heads)


def the_prompt(judge, frame, regions):
    return build_prompt(judge.recipes.recipe, frame.image, regions.crops, regions.boxes, judge.recipes.references)


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen2_5_vl-awq"])
def test_every_vote_keeps_the_form_at_the_demo_size(tiny_models, pcb_recipe, name):
    """The default image sizes put the answer further into the sequence than the tiny model was
    taught; free, the AWQ model answered 'defective: none' there (the demo's NO-READs)."""
    judge = build(config(tiny_models[name], pcb_recipe, votes=5, frame_max_pixels=1024 * 1024,
                         crop_max_pixels=448 * 448, reference_max_pixels=1024 * 1024), warm_up=False)
    frame, regions = part(seed=6)
    prompt = the_prompt(judge, frame, regions)
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert v.details["valid_votes"] == 5 and v.details["invalid_votes"] == 0
    assert all(in_form(x.raw, prompt) for x in v.votes), [x.raw for x in v.votes]
    assert all(x.defect_type in judge.recipes.recipe.defect_names for x in v.votes if x.defective)
    assert v.details["timings_ms"]["constrain_ms"] > 0.0


def test_qwen3_vl_free_answers_fail_constrained_ones_parse(tiny_models, pcb_recipe):
    free = build(config(tiny_models["qwen3_vl"], pcb_recipe, votes=5, constrained=False), warm_up=False)
    frame, regions = part(seed=7)
    with pytest.raises(JudgeError, match="answers could be parsed"):
        free.judge(frame, regions, frame.deadline_mono)
    judge = build(config(tiny_models["qwen3_vl"], pcb_recipe, votes=5), warm_up=False)
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert v.details["valid_votes"] == 5
    assert all(in_form(x.raw, the_prompt(judge, frame, regions)) for x in v.votes)


def test_constrained_votes_still_share_one_prefill(tiny_models, pcb_recipe):
    judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=5, max_new_tokens=40), warm_up=False)
    calls = count_forwards(judge.engine.model)
    frame, regions = part(seed=8)
    v = judge.judge(frame, regions, frame.deadline_mono)
    prefills = [c for c in calls if c[1] > 1]
    assert len(prefills) == 2 and all(c == (5, 1) for c in calls[2:])  # prefix, suffix, then k-wide steps
    assert 2 + len(calls[2:]) <= 2 + 40 and v.details["valid_votes"] == 5


def test_the_constraint_leaves_p_defective_alone(tiny_models, pcb_recipe):
    p = {}
    for constrained in (True, False):
        judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=2, constrained=constrained),
                      warm_up=False)
        frame, regions = part(seed=9)
        p[constrained] = judge.judge(frame, regions, frame.deadline_mono).details["p_logit"]
    assert p[True] == pytest.approx(p[False], abs=1e-6)


def test_constrained_greedy_votes_match_generate_with_the_logits_processor(tiny_models, pcb_recipe):
    """transformers' generate on the whole uncached prompt, with AnswerLogitsProcessor, gives the
    engine's constrained greedy rows token for token: the constraint is the same in both."""
    from edge_inspector.judge.vlm.constrain import AnswerLogitsProcessor, FormConstraint

    judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=3, temperature=1e-4, top_p=1.0,
                         max_new_tokens=40, frame_max_pixels=448 * 448), warm_up=False)
    engine = judge.engine
    frame, regions = part(seed=10)
    prompt = the_prompt(judge, frame, regions)
    gen = engine.run(prompt, 3, DeadlineGuard(math.inf))
    assert all(in_form(t, prompt) for t in gen.texts)
    enc = engine.encoder.encode(prompt.prefix + prompt.suffix)
    ids = torch.tensor([enc.ids])
    processor = AnswerLogitsProcessor(FormConstraint(prompt.form, engine._table), prompt_len=ids.shape[1])
    engine.model.model.rope_deltas = None
    with torch.inference_mode():
        out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    pixel_values=enc.pixel_values, image_grid_thw=enc.grids,
                                    mm_token_type_ids=(ids == engine.encoder.image_token).int(), do_sample=False,
                                    max_new_tokens=40, eos_token_id=engine.encoder.stop_ids,
                                    logits_processor=[processor])
    reference = engine.encoder.decode(out[:, ids.shape[1]:].tolist())[0]
    assert gen.texts == (ANSWER_PREFIX + reference,) * 3


def test_the_benchmark_puts_constrained_beside_free(tiny_models):
    import bench_judge

    rows = {name.strip(): (ms, ratio) for name, ms, ratio in
            bench_judge.bench_model(tiny_models["qwen2_5_vl"], 224, repeats=1, max_new_tokens=8, device="cpu")}
    ms, ratio = rows["5 votes constrained"]
    assert ms > 0 and ratio.endswith("x free") and float(ratio[:-6]) > 0
    assert rows["5 votes batched"][0] > 0 and "constraint cost per vote" in rows
    assert "% of decoding" in rows["constraint's own time, 5 votes"][1]
