"""The VLM judge on tiny checkpoints through the production loading path: full precision, AWQ,
Qwen3-VL; the shared prefill and the prefix cache (counted in tokens and model calls); equivalence with
transformers' own generation; the deadline; load failures; SAM; golden parity."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_inspector.envelope import Regions
from edge_inspector.errors import JudgeTimeout, StartupError
from edge_inspector.judge.vlm import build
from edge_inspector.judge.vlm.generation import DeadlineGuard
from edge_inspector.judge.vlm.loading import load_model
from tests.integration.judge.vlm_parts import config, count_forwards, part


@pytest.fixture(scope="module")
def judge(tiny_models, pcb_recipe):
    return build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=5))


# -- full precision: a verdict, one shared prefill, the prefix cache ------------------------------

def test_full_precision_verdict(judge):
    assert judge.engine.loaded.dtype == torch.float32
    assert judge.fingerprint.startswith("qwen2_5_vl:")
    frame, regions = part()
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert v.decided_by == "vlm" and v.model == judge.fingerprint
    assert len(v.votes) == 5 and v.details["valid_votes"] >= 3  # the tiny model keeps the answer form
    assert all(x.raw.startswith("defective:") for x in v.votes)
    assert 0.0 < v.details["p_logit"] < 1.0 and v.details["decision_mass"] > 0.5
    assert 0.0 <= v.p_defective <= 1.0 and v.confidence == pytest.approx(max(v.p_defective, 1 - v.p_defective))
    assert v.details["prefix_cache_hit"] is True  # the warm-up at start-up computed it


def test_votes_share_one_prefill_and_the_prefix_is_prefilled_once(tiny_models, pcb_recipe):
    judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=5, max_new_tokens=8), warm_up=False)
    engine = judge.engine
    calls = count_forwards(engine.model)
    frame, regions = part(seed=1)
    judge.judge(frame, regions, frame.deadline_mono)
    prefix_tokens = len(engine._prefix.enc.ids)
    first = engine.prefill_tokens_total
    prefill_calls = [c for c in calls if c[1] > 1]
    assert prefill_calls == [(1, prefix_tokens), (1, first - prefix_tokens)]  # prefix once, suffix once
    assert all(c == (5, 1) for c in calls[2:])  # then 5 rows decode together, one token per call
    assert len(calls) - 2 <= 8
    calls.clear()
    frame, regions = part(seed=2)
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert engine.prefill_tokens_total - first == v.details["prefill_tokens"] == first - prefix_tokens
    assert [c for c in calls if c[1] > 1] == [(1, first - prefix_tokens)]  # the prefix was not recomputed
    assert v.details["prefix_cache_hit"] is True


def test_prefix_cache_gives_the_same_probability_as_a_full_prefill(tiny_models, pcb_recipe):
    frame, regions = part(seed=3)
    p = {}
    for cached in (True, False):
        judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=0, prefix_cache=cached), warm_up=False)
        judge.judge(*part(seed=4)[:2], time.monotonic() + 30)  # another part first: the cache is reused
        p[cached] = judge.judge(frame, regions, frame.deadline_mono).details["p_logit"]
    assert p[True] == pytest.approx(p[False], abs=1e-5)


def test_a_changed_recipe_recomputes_the_prefix(tiny_models, pcb_recipe, tmp_path):
    recipe = tmp_path / "pcb.yaml"
    shutil.copytree(pcb_recipe.parent / "pcb", tmp_path / "pcb")
    recipe.write_text(pcb_recipe.read_text())
    judge = build(config(tiny_models["qwen2_5_vl"], recipe, votes=0))
    frame, regions = part()
    assert judge.judge(frame, regions, frame.deadline_mono).details["prefix_cache_hit"] is True
    recipe.write_text(recipe.read_text().replace("bare printed circuit board", "bare PCB, 2 layers"))
    t = time.time_ns() + 10**9
    os.utime(recipe, ns=(t, t))
    before = judge.engine.prefill_tokens_total
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert v.details["prefix_cache_hit"] is False
    assert judge.engine.prefill_tokens_total - before == len(judge.engine._prefix.enc.ids) + v.details["prefill_tokens"]


def test_greedy_votes_match_transformers_generate(tiny_models, pcb_recipe):
    """With a near-zero temperature each of the k batched rows must equal transformers' own greedy
    generation on the whole prompt: the cache fork, the k-row expansion and the rope positions are right."""
    judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=3, temperature=1e-4, top_p=1.0,
                         max_new_tokens=12, constrained=False), warm_up=False)
    engine = judge.engine
    frame, regions = part(seed=5)
    from edge_inspector.judge.vlm.prompt import build_prompt

    prompt = build_prompt(judge.recipes.recipe, frame.image, regions.crops, regions.boxes, judge.recipes.references)
    gen = engine.run(prompt, 3, DeadlineGuard(math.inf))
    enc = engine.encoder.encode(prompt.prefix + prompt.suffix)
    ids = torch.tensor([enc.ids])
    engine.model.model.rope_deltas = None
    out = engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=enc.pixel_values,
                                image_grid_thw=enc.grids, mm_token_type_ids=(ids == engine.encoder.image_token).int(),
                                do_sample=False, max_new_tokens=12, eos_token_id=engine.encoder.stop_ids)
    reference = engine.encoder.decode(out[:, ids.shape[1]:].tolist())[0]
    assert gen.texts == ("defective:" + reference,) * 3


# -- the deadline ------------------------------------------------------------------------------------

def test_generation_stops_before_the_deadline(tiny_models, pcb_recipe):
    now = [0.0]

    def clock() -> float:  # every reading advances 5 ms: a slow machine, deterministically
        now[0] += 0.005
        return now[0]

    # free decoding: a constrained answer ends after its one-line description, long before 200 tokens
    judge = build(config(tiny_models["qwen2_5_vl"], pcb_recipe, votes=5, max_new_tokens=200,
                         deadline_margin_ms=0.0, constrained=False), clock=clock, warm_up=False)
    calls = count_forwards(judge.engine.model)
    frame, regions = part()
    with pytest.raises(JudgeTimeout, match="stopped"):
        judge.judge(frame, regions, deadline_mono=now[0] + 0.5)
    decode_steps = sum(1 for c in calls if c[1] == 1)
    assert 0 < decode_steps < 100  # generation started, then stopped early
    assert now[0] <= 0.5 + 0.02  # never ran a step past the deadline (a few clock readings after it)


# -- AWQ, Qwen3-VL, SAM ----------------------------------------------------------------------------

def test_awq_loads_with_a_full_precision_vision_tower(tiny_models, pcb_recipe):
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    judge = build(config(tiny_models["qwen2_5_vl-awq"], pcb_recipe, votes=3))
    model = judge.engine.model
    assert judge.fingerprint.startswith("qwen2_5_vl-awq:") and judge.engine.loaded.dtype == torch.bfloat16
    assert isinstance(model.model.language_model.layers[0].self_attn.q_proj, BaseQuantLinear)
    visual_linears = [m for m in model.model.visual.modules() if isinstance(m, torch.nn.Linear | BaseQuantLinear)]
    assert visual_linears and all(type(m) is torch.nn.Linear for m in visual_linears)
    frame, regions = part()
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert len(v.votes) == 3 and v.decided_by == "vlm"


def test_awq_with_the_legacy_skip_list_still_keeps_the_vision_tower(tiny_models, tmp_path):
    """Published Qwen2.5-VL AWQ configs say modules_to_not_convert: ["visual"], which transformers 5
    no longer matches; the loader adds model.visual."""
    d = tmp_path / "legacy"
    shutil.copytree(tiny_models["qwen2_5_vl-awq"], d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"]["modules_to_not_convert"] = ["visual"]
    (d / "config.json").write_text(json.dumps(cfg))
    loaded = load_model(d, device="cpu")
    assert type(loaded.model.model.visual.blocks[0].attn.qkv) is torch.nn.Linear


def test_qwen3_vl(tiny_models, pcb_recipe):
    judge = build(config(tiny_models["qwen3_vl"], pcb_recipe, votes=0))
    assert judge.fingerprint.startswith("qwen3_vl:")
    frame, regions = part()
    v = judge.judge(frame, regions, frame.deadline_mono)
    assert v.details["prefix_cache_hit"] is True and 0.0 < v.details["p_logit"] < 1.0
    uncached = build(config(tiny_models["qwen3_vl"], pcb_recipe, votes=0, prefix_cache=False), warm_up=False)
    p = uncached.judge(frame, regions, frame.deadline_mono).details["p_logit"]
    assert p == pytest.approx(v.details["p_logit"], abs=1e-5)  # deepstack through the prefix cache
    # sampling: the tiny Qwen3-VL does not keep the answer form (its answers are invalid votes), so
    # the engine is checked directly: k answers from one prefill
    from edge_inspector.judge.vlm.prompt import build_prompt

    prompt = build_prompt(judge.recipes.recipe, frame.image, regions.crops, regions.boxes, judge.recipes.references)
    gen = judge.engine.run(prompt, 3, DeadlineGuard(math.inf))
    assert len(gen.texts) == 3 and all(t.startswith("defective:") for t in gen.texts) and gen.prefix_hit


def test_sam_loads_and_segments_a_box(tiny_models):
    from transformers import AutoModelForMaskGeneration, SamProcessor

    model = AutoModelForMaskGeneration.from_pretrained(tiny_models["sam"], local_files_only=True).eval()
    processor = SamProcessor.from_pretrained(tiny_models["sam"], local_files_only=True)
    image = np.zeros((120, 160, 3), np.uint8)
    inputs = processor(images=image, input_boxes=[[[20, 20, 80, 90]]], return_tensors="pt")
    with torch.inference_mode():
        out = model(**inputs, multimask_output=False)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    assert masks[0].shape[-2:] == (120, 160)


# -- load failures -----------------------------------------------------------------------------------

def copy_model(tiny_models, tmp_path, name="qwen2_5_vl") -> Path:
    d = tmp_path / name
    shutil.copytree(tiny_models[name], d)
    return d


def expect_startup_error(path: Path, match: str) -> StartupError:
    with pytest.raises(StartupError, match=match) as err:
        load_model(path, device="cpu")
    assert str(path) in str(err.value)
    return err.value


def test_missing_directory(tmp_path):
    expect_startup_error(tmp_path / "nope", "does not exist")


def test_not_a_checkpoint(tmp_path):
    expect_startup_error(tmp_path, "no config.json")


def test_wrong_architecture(tiny_models):
    expect_startup_error(tiny_models["sam"], r"wrong architecture: model_type 'sam'")


def test_truncated_safetensors(tiny_models, tmp_path):
    d = copy_model(tiny_models, tmp_path)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    expect_startup_error(d, r"corrupt safetensors file model.safetensors: .* \(truncated or overwritten\)")


def test_garbage_safetensors_header(tiny_models, tmp_path):
    d = copy_model(tiny_models, tmp_path)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 40) + b"{not json" + b"\0" * 64)
    expect_startup_error(d, "corrupt safetensors file model.safetensors: unreadable header")


def test_missing_tensor_is_not_silently_random(tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    d = copy_model(tiny_models, tmp_path)
    tensors = load_file(d / "model.safetensors")
    name = next(k for k in tensors if "layers.1.mlp.down_proj" in k)
    del tensors[name]
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    expect_startup_error(d, "weights missing from the checkpoint")


def test_awq_checkpoint_with_a_quantized_vision_tower(tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    d = copy_model(tiny_models, tmp_path, "qwen2_5_vl-awq")
    tensors = load_file(d / "model.safetensors")
    w = tensors.pop("model.visual.blocks.0.mlp.down_proj.weight")  # as if gptqmodel had quantized it
    tensors["model.visual.blocks.0.mlp.down_proj.qweight"] = torch.zeros(w.shape[1], w.shape[0] // 8, dtype=torch.int32)
    tensors["model.visual.blocks.0.mlp.down_proj.scales"] = torch.ones(1, w.shape[0], dtype=torch.bfloat16)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    expect_startup_error(d, "the vision tower is quantized in this AWQ checkpoint")


# -- golden parity ------------------------------------------------------------------------------------

def test_parity_of_the_awq_model(tiny_models, pcb_recipe, capsys):
    import parity

    assert parity.main([str(tiny_models["qwen2_5_vl"]), str(tiny_models["qwen2_5_vl-awq"]), "--n", "4",
                        "--device", "cpu"]) == 0
    assert "PASS" in capsys.readouterr().out
    # the same comparison fails at a tolerance no 4-bit model meets
    assert parity.main([str(tiny_models["qwen2_5_vl"]), str(tiny_models["qwen2_5_vl-awq"]), "--n", "4",
                        "--device", "cpu", "--tolerance", "1e-7"]) == 1
    assert "FAIL" in capsys.readouterr().out


# -- calibration on labelled recordings ---------------------------------------------------------------

def test_calibrate_writes_the_recipe_and_the_judge_uses_it(tiny_models, pcb_recipe, tmp_path):
    import cv2

    import calibrate
    from judge_parts import synthetic_parts

    shutil.copytree(pcb_recipe.parent / "pcb", tmp_path / "pcb")
    recipe = tmp_path / "pcb.yaml"
    recipe.write_text(pcb_recipe.read_text())
    lines = []
    for p in synthetic_parts(6, seed=11, size=320):
        cv2.imwrite(str(tmp_path / f"{p.name}.png"), p.image)
        lines.append(json.dumps({"image": f"{p.name}.png", "label": "short" if p.defective else "good",
                                 "score": p.score, "boxes": [b.as_list() for b in p.boxes]}))
    manifest = tmp_path / "parts.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    assert calibrate.main(["--manifest", str(manifest), "--model-dir", str(tiny_models["qwen2_5_vl"]),
                           "--recipe", str(recipe), "--votes", "3", "--device", "cpu"]) == 0
    from edge_inspector.recipe import load_recipe

    cal = load_recipe(recipe).calibration
    assert cal is not None and cal.votes == 3 and cal.n_parts >= 4 and "brier_calibrated" in cal.metrics
    defective_scores = [json.loads(x)["score"] for x in lines if json.loads(x)["label"] != "good"]
    assert cal.cascade_pass_below < min(defective_scores)  # the cascade passes no recorded defective part
    judge = build(config(tiny_models["qwen2_5_vl"], recipe, votes=3), warm_up=False)
    frame, regions = part()
    high = dataclasses.replace(regions, score=cal.cascade_pass_below * 2)
    v = judge.judge(frame, high, frame.deadline_mono)
    assert v.decided_by == "vlm" and v.details["calibrated"] is True
    low = Regions(score=cal.cascade_pass_below / 2, boxes=(), summary=regions.summary, model="regions:t")
    assert judge.judge(frame, low, frame.deadline_mono).decided_by == "regions"
