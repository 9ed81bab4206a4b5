"""From the judge's prompt (edge_inspector.judge.vlm.prompt, in Qwen's chat format) to the messages of
an OpenAI chat completion request, and the request body.

The order is the prompt's: the fixed part (system text with the recipe, the reference images) first,
then the frame, the crops and the question, so that the server's prefix cache serves the fixed part
for every part. The answer's start (``defective:``) becomes a final assistant message the model
continues.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from edge_inspector.judge.vlm.prompt import ImagePart, Prompt, Segment, chat_messages

def fit_pixels(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Resize (aspect kept, area interpolation) to at most ``max_pixels``; smaller images unchanged."""
    h, w = image.shape[:2]
    if h * w <= max_pixels:
        return image
    s = (max_pixels / (h * w)) ** 0.5
    return cv2.resize(image, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)


class ImageEncoder:
    """Images as PNG data URLs (lossless: the defects are small). The last few encodings are kept,
    keyed by content, so that the recipe's reference images are encoded once."""

    def __init__(self, max_pixels: dict[str, int], keep: int = 8) -> None:
        self.max_pixels = max_pixels
        self.keep = keep
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()  # concurrent requests (a batch of parts) share the cache

    def url(self, part: ImagePart) -> str:
        img = np.ascontiguousarray(part.image)
        key = hashlib.sha1(f"{part.role}:{img.shape}:{img.dtype}".encode() + img.data).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        ok, png = cv2.imencode(".png", fit_pixels(img, self.max_pixels[part.role]))
        if not ok:
            raise ValueError(f"could not encode a {part.role} image of shape {img.shape} as PNG")
        url = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
        with self._lock:
            if len(self._cache) >= self.keep:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = url
        return url


def to_messages(segments: Sequence[Segment], encode_image) -> list[dict[str, Any]]:
    """Split Qwen chat-format segments into OpenAI messages (``prompt.chat_messages``, images as
    ``image_url`` data URLs, a turn of text alone as a string)."""
    return chat_messages(segments, lambda seg: {"type": "image_url", "image_url": {"url": encode_image(seg)}},
                         flatten_text=True)


def request_body(prompt: Prompt, encode_image, *, model: str, votes: int, temperature: float, top_p: float,
                 max_tokens: int, top_logprobs: int, seed: int | None, prefill_answer: bool,
                 extra: dict[str, Any]) -> dict[str, Any]:
    """The body of one chat completion request: ``votes`` answers as ``n`` samples (one decision
    token when ``votes`` is 0), with the decision token's log-probabilities."""
    messages = to_messages(prompt.prefix + prompt.suffix, encode_image)
    if not prefill_answer and messages and messages[-1]["role"] == "assistant":
        messages.pop()
    body: dict[str, Any] = {
        "model": model, "messages": messages, "n": max(votes, 1),
        "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens if votes else 1,
        "logprobs": True, "top_logprobs": top_logprobs, "stream": False,
    }
    if seed is not None:
        body["seed"] = seed
    if prefill_answer and messages and messages[-1]["role"] == "assistant":
        body["continue_final_message"] = True  # vLLM; llama-server continues a final assistant turn
        body["add_generation_prompt"] = False
    body.update(extra)
    return body
