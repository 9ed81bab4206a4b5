"""The remote judge's request: the prompt as chat messages (fixed part first), the body, the config."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from edge_inspector.config import JudgeConfig
from edge_inspector.judge.openai.config import OpenAIJudgeConfig
from edge_inspector.judge.openai.messages import ImageEncoder, fit_pixels, request_body, to_messages
from edge_inspector.judge.vlm.prompt import ANSWER_PREFIX, build_prompt
from edge_inspector.recipe import load_recipe

PIXELS = {"frame": 64 * 64, "crop": 32 * 32, "reference": 64 * 64}


def _prompt(recipe_path, crops: int = 1):
    recipe = load_recipe(recipe_path)
    frame = np.full((80, 80), 90, np.uint8)
    ref = np.full((40, 40), 200, np.uint8)
    return build_prompt(recipe, frame, [np.zeros((20, 20), np.uint8)] * crops, (), [ref])


def test_messages_keep_the_fixed_part_first_and_the_answer_start_last(recipe_path):
    prompt = _prompt(recipe_path)
    msgs = to_messages(prompt.prefix + prompt.suffix, ImageEncoder(PIXELS).url)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert "Defect types:" in msgs[0]["content"] and "<|im_" not in msgs[0]["content"]
    user = msgs[1]["content"]
    kinds = [p["type"] for p in user]
    # reference image (fixed part) before the frame and the crop
    assert kinds == ["text", "image_url", "text", "image_url", "text", "image_url", "text"]
    assert "reference" in user[0]["text"] and "Frame under inspection" in user[2]["text"]
    assert all("<|im_" not in p["text"] for p in user if p["type"] == "text")
    assert msgs[2] == {"role": "assistant", "content": ANSWER_PREFIX}


def test_images_are_png_data_urls_within_their_pixel_limit(recipe_path):
    enc = ImageEncoder(PIXELS)
    prompt = _prompt(recipe_path)
    frame = next(s for s in prompt.suffix if not isinstance(s, str))
    url = enc.url(frame)
    assert url.startswith("data:image/png;base64,")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape[0] * img.shape[1] <= PIXELS["frame"] and img.shape[0] == img.shape[1]
    assert enc.url(frame) is url  # the same content is encoded once
    assert fit_pixels(np.zeros((10, 10), np.uint8), 400).shape == (10, 10)


def test_body_asks_votes_as_n_choices_with_the_decision_logprobs(recipe_path):
    prompt = _prompt(recipe_path)
    kw = dict(model="m", temperature=0.7, top_p=0.9, max_tokens=48, top_logprobs=10, seed=3,
              prefill_answer=True, extra={"top_k": 20})
    body = request_body(prompt, ImageEncoder(PIXELS).url, votes=5, **kw)
    assert body["n"] == 5 and body["max_tokens"] == 48 and body["logprobs"] is True
    assert body["top_logprobs"] == 10 and body["seed"] == 3 and body["top_k"] == 20
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    zero = request_body(prompt, ImageEncoder(PIXELS).url, votes=0, **{**kw, "prefill_answer": False})
    assert zero["n"] == 1 and zero["max_tokens"] == 1
    assert zero["messages"][-1]["role"] == "user" and "continue_final_message" not in zero


def test_config_is_a_judge_kind_and_keeps_secrets_out_of_the_file():
    cfg = TypeAdapter(JudgeConfig).validate_python(
        {"kind": "openai", "base_url": "http://judge:8000/v1/", "model": "qwen", "api_key": "env:JUDGE_KEY"})
    assert isinstance(cfg, OpenAIJudgeConfig) and cfg.base_url == "http://judge:8000/v1"
    assert cfg.constrained is False
    with pytest.raises(ValidationError, match="secret"):
        OpenAIJudgeConfig(base_url="http://judge:8000/v1", model="qwen", api_key="sk-literal")
    with pytest.raises(ValidationError, match="http"):
        OpenAIJudgeConfig(base_url="judge:8000", model="qwen")
