"""The judge's prompt, built from a product recipe (no torch here).

The layout follows the one-shot + domain-knowledge setting of the MMAD benchmark: the model sees the
recipe's knowledge (part, defect taxonomy with descriptions, rules), a known-good reference, the frame
and the zoomed crops of the suspicious regions, each labelled, and answers in a fixed form.

A prompt is split into a *prefix*, identical for every part of a recipe (instructions, recipe,
reference images), whose key/value cache the engine computes once, and a per-part *suffix*. Both are
sequences of text and images in Qwen's chat format; the engine expands each image into its vision
tokens. The assistant's answer is pre-filled with ``ANSWER_PREFIX`` so that the first generated token
is the decision (yes/no), whose probability is P(defective). The prompt also carries its
:class:`AnswerForm`, the answers it allows, which the engine's constrained decoding keeps to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_inspector.envelope import Box
from edge_inspector.recipe import Recipe

ANSWER_PREFIX = "defective:"
YES_WORDS = ("yes", "Yes", "YES")  # the decision tokens counted for P(defective)
NO_WORDS = ("no", "No", "NO")


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image in the prompt. ``role`` picks the size limit: reference, frame or crop."""

    image: np.ndarray  # uint8, HxW grey or HxWx3 BGR (as OpenCV reads it)
    role: str


Segment = str | ImagePart


@dataclass(frozen=True, slots=True)
class AnswerForm:
    """The answers a prompt allows, for constrained decoding: after the pre-filled start, one of
    ``heads`` exactly (no head is the start of another), then, when ``tail``, free text up to the end of
    the line. The engine masks every token that would leave the form."""

    heads: tuple[str, ...]
    tail: bool = True

    def __post_init__(self) -> None:
        if not self.heads:
            raise ValueError("an answer form needs at least one head")
        ordered = sorted(set(self.heads))  # a head that starts another sorts right before one that it starts
        for a, b in zip(ordered, ordered[1:]):
            if b.startswith(a):
                raise ValueError(f"answer heads must be prefix-free: {a!r} starts {b!r}")


@functools.lru_cache(maxsize=64)
def judge_form(taxonomy: tuple[str, ...], n_regions: int) -> AnswerForm:
    """The judge's four-line form after ``defective:``: a decision (the variants P(defective) counts);
    for yes, a defect type of the taxonomy and a region 1..n or none; for no, none and none; then the
    description, one line."""
    yes = [sp + w for w in YES_WORDS for sp in (" ", "")]
    no = [sp + w for w in NO_WORDS for sp in (" ", "")]
    regions = [str(r) for r in range(1, n_regions + 1)] + ["none"]
    heads = [f"{d}\ndefect_type: {t}\nregion: {r}\ndescription:" for d in yes for t in taxonomy for r in regions]
    heads += [f"{d}\ndefect_type: none\nregion: none\ndescription:" for d in no]
    return AnswerForm(tuple(heads), tail=True)


@functools.lru_cache(maxsize=64)
def choice_form(letters: tuple[str, ...]) -> AnswerForm:
    """A multiple-choice answer: one option letter (with or without a leading space), nothing after."""
    return AnswerForm(tuple(sp + x for x in letters for sp in (" ", "")), tail=False)


@dataclass(frozen=True, slots=True)
class Prompt:
    prefix: tuple[Segment, ...]  # the same for every part of the recipe: cached
    suffix: tuple[Segment, ...]  # this part: frame, crops, question, the answer's start
    n_regions: int
    form: AnswerForm | None = None  # the answers allowed (constrained decoding); None: free text
    answer_prefix: str = ANSWER_PREFIX  # the answer's pre-filled start (the suffix ends with it)


def system_text(recipe: Recipe) -> str:
    names = ", ".join(recipe.defect_names)
    lines = [
        "You are the visual inspection system of a production line. You judge one part at a time.",
        f"Product: {recipe.product}.",
    ]
    if recipe.description:
        lines.append(recipe.description.strip())
    lines.append("Defect types:")
    lines += [f"- {d.name}: {d.description}" for d in recipe.defects]
    if recipe.rules:
        lines.append("Rules:")
        lines += [f"- {r}" for r in recipe.rules]
    lines += [
        "Answer in exactly this form, four lines, nothing else:",
        "defective: yes or no",
        f"defect_type: one of {names}, or none",
        "region: the number of the region that shows the defect, or none",
        "description: one short sentence",
    ]
    return "\n".join(lines)


def _region_label(i: int, box: Box | None) -> str:
    if box is None:
        return f"\nRegion {i} (zoomed):"
    return (f"\nRegion {i} (zoomed; box x1={box.x1} y1={box.y1} x2={box.x2} y2={box.y2}, "
            f"anomaly score {box.score:.2f}):")


def build_prompt(recipe: Recipe, frame: np.ndarray, crops: Sequence[np.ndarray] = (),
                 boxes: Sequence[Box] = (), references: Sequence[np.ndarray] = (),
                 part_reference: np.ndarray | None = None) -> Prompt:
    """The prompt for one part. ``references`` are the recipe's (in the cached prefix);
    ``part_reference``, when given, replaces them for this part and goes into the suffix."""
    prefix: list[Segment] = [f"<|im_start|>system\n{system_text(recipe)}<|im_end|>\n<|im_start|>user\n"]
    suffix: list[Segment] = []
    refs = [part_reference] if part_reference is not None else list(references)
    target = suffix if part_reference is not None else prefix
    if refs:
        target.append("Known-good reference image of this product:")
        target += [ImagePart(r, "reference") for r in refs]
    suffix += ["\nFrame under inspection:", ImagePart(frame, "frame")]
    for i, crop in enumerate(crops, start=1):
        suffix += [_region_label(i, boxes[i - 1] if i - 1 < len(boxes) else None), ImagePart(crop, "crop")]
    question = "\nIs the part in the frame defective?"
    if refs:
        question += " Compare it with the reference."
    if crops:
        question += " The regions are the places that differ most from known-good parts."
    suffix.append(f"{question}<|im_end|>\n<|im_start|>assistant\n{ANSWER_PREFIX}")
    return Prompt(prefix=tuple(prefix), suffix=tuple(suffix), n_regions=len(crops),
                  form=judge_form(tuple(recipe.defect_names), len(crops)))


def prompt_for(recipe: Recipe, frame: np.ndarray, crops: Sequence[np.ndarray], boxes: Sequence[Box],
               references: Sequence[np.ndarray], part_reference: np.ndarray | None, max_regions: int) -> Prompt:
    """The prompt the judge sends for one part: the regions stage's first ``max_regions`` crops (best
    first) and their boxes. The VLM judge calls this; so does the dataset export, so that a model is
    trained on exactly what it is shown at inference."""
    return build_prompt(recipe, frame, tuple(crops)[:max_regions], tuple(boxes)[:max_regions], references,
                        part_reference)


_MARK = re.compile(r"<\|im_start\|>(\w+)\n|<\|im_end\|>\n?")


def chat_messages(segments: Sequence[Segment], image_item: Callable[[ImagePart], dict[str, Any]],
                  flatten_text: bool = False) -> list[dict[str, Any]]:
    """The prompt's segments (Qwen's chat format) as chat messages, ``{"role", "content": [items]}``:
    text as ``{"type": "text", "text"}``, each image as ``image_item(part)`` (an OpenAI ``image_url``,
    a dataset's file), in the prompt's order. Text outside any turn is dropped; a turn left open at
    the end (the pre-filled answer) becomes the last message. ``flatten_text``: a turn of text alone
    has its text as a plain string. The served judge sends these; the dataset export writes them."""
    messages: list[dict[str, Any]] = []
    role: str | None = None
    parts: list[dict[str, Any]] = []

    def close() -> None:
        nonlocal parts
        if role is not None and parts:
            if flatten_text and all(p["type"] == "text" for p in parts):
                messages.append({"role": role, "content": "".join(p["text"] for p in parts)})
            else:
                messages.append({"role": role, "content": parts})
        parts = []

    def text(chunk: str) -> None:
        if role is None or not chunk:
            return
        if parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += chunk
        else:
            parts.append({"type": "text", "text": chunk})

    for seg in segments:
        if isinstance(seg, ImagePart):
            if role is not None:
                parts.append(image_item(seg))
            continue
        pos = 0
        for m in _MARK.finditer(seg):
            text(seg[pos:m.start()])
            pos = m.end()
            close()
            role = m.group(1)  # None for an end mark
        text(seg[pos:])
    close()
    return messages


def answer_text(prompt: Prompt, defective: bool, defect_type: str | None = None, region: int | None = None,
                description: str = "") -> str:
    """The whole answer as the judge's constrained decoder writes it: the pre-filled ``defective:``,
    one head of the prompt's form (decision, defect type, region), then the description on the same
    line. ValueError when the form does not allow it (a type outside the taxonomy, a region out of
    range, a defective answer without a type)."""
    decision = " yes" if defective else " no"
    kind = defect_type if defective else "none"
    where = str(region) if defective and region is not None else "none"
    head = f"{decision}\ndefect_type: {kind}\nregion: {where}\ndescription:"
    if prompt.form is not None and head not in prompt.form.heads:
        raise ValueError(f"the answer form does not allow defective={defective}, defect_type={defect_type!r}, "
                         f"region={region!r} (regions 1..{prompt.n_regions})")
    line = " ".join(description.split())
    return prompt.answer_prefix + head + (" " + line if line else "")
