"""A conversation as training tensors, encoded the way the judge encodes its prompt.

The messages go through the checkpoint's own chat template (the processor's), so the text around the
images is what the model sees at inference; the rendered text is then cut at each image placeholder
and encoded by the judge's :class:`~edge_inspector.judge.vlm.encode.PromptEncoder`: the same
tokenizer calls, the same image processing (OpenCV read, BGR to RGB, the image processor with a
pixel limit) and the same expansion of each image into its vision tokens. The labels are -100 on the
prompt (system, user, ``<|im_start|>assistant\\n``) and the token ids on the assistant's answer up to
and including its ``<|im_end|>``: the loss is on the answer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_inspector.errors import ImageError
from edge_inspector.imageio import load_image
from edge_inspector.judge.vlm.prompt import ImagePart, Segment
from edge_inspector.learn.dataset import DatasetError, Example

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
IGNORE = -100
ROLE = "image"  # the PromptEncoder's size-limit key for a dataset image that names no role


@dataclass(slots=True)
class EncodedExample:
    id: str
    ids: list[int]
    labels: list[int]
    pixel_values: object | None  # torch.Tensor (patches x features)
    grids: object | None  # torch.LongTensor (images x 3)

    @property
    def answer_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def render(processor, messages: list[dict], generation_prompt: bool) -> str:
    """The messages through the checkpoint's chat template (the processor's; the tokenizer's where the
    checkpoint has none for its processor), as text with the images as placeholders."""
    owner = processor if getattr(processor, "chat_template", None) else processor.tokenizer
    return owner.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def to_segments(text: str, images: list[Path], where: str,
                roles: list[str | None] | None = None) -> list[Segment]:
    """Cut rendered text at the image placeholders; each becomes the next image, read as the judge reads."""
    pieces = text.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 != len(images):
        raise DatasetError(f"{where}: the chat template rendered {len(pieces) - 1} image placeholders for "
                           f"{len(images)} images")
    segments: list[Segment] = []
    for i, piece in enumerate(pieces):
        if piece:
            segments.append(piece)
        if i < len(images):
            try:
                segments.append(ImagePart(load_image(images[i]), (roles[i] if roles else None) or ROLE))
            except ImageError as exc:
                raise DatasetError(f"{where}: {exc}") from exc
    return segments


class ConversationEncoder:
    """Encodes :class:`Example` s for one checkpoint. ``processor`` carries the chat template,
    ``encoder`` is the judge's PromptEncoder built with a pixel limit per image role (``frame``,
    ``crop``, ``reference``: the judge's own, from the dataset's manifest) and ``image`` for images
    that name no role."""

    def __init__(self, processor, encoder) -> None:
        self.processor = processor
        self.encoder = encoder
        tok = encoder.tok
        self.im_end = tok.convert_tokens_to_ids("<|im_end|>")

    def encode(self, ex: Example) -> EncodedExample:
        where = f"example {ex.id!r} (line {ex.line})"
        prompt_text = render(self.processor, ex.prompt, generation_prompt=True)
        full_text = render(self.processor, list(ex.messages), generation_prompt=False)
        if not full_text.startswith(prompt_text):
            raise DatasetError(f"{where}: the chat template renders the conversation with a different start "
                               "than the prompt alone; cannot find the answer's tokens")
        answer_text = full_text[len(prompt_text):]
        if IMAGE_PLACEHOLDER in answer_text:
            raise DatasetError(f"{where}: the assistant's answer holds an image")
        prompt = self.encoder.encode(to_segments(prompt_text, ex.images, where, ex.image_roles))
        answer = self.encoder.tok.encode(answer_text, add_special_tokens=False)
        if self.im_end in answer:  # the answer ends at its <|im_end|>; what the template puts after is not learnt
            answer = answer[:answer.index(self.im_end) + 1]
        if not answer:
            raise DatasetError(f"{where}: the assistant's answer encodes to no tokens")
        ids = prompt.ids + answer
        labels = [IGNORE] * len(prompt.ids) + answer
        pixels = prompt.pixel_values.to("cpu") if prompt.pixel_values is not None else None
        grids = prompt.grids.to("cpu") if prompt.grids is not None else None
        return EncodedExample(ex.id, ids, labels, pixels, grids)


def collate(batch: list[EncodedExample], pad_id: int, image_token_id: int):
    """Right-padded input ids, attention mask and labels; the images of every row, in order; and
    ``mm_token_type_ids`` (1 on image tokens), without which transformers gives the sequence 1-D
    positions instead of the 3-D rope positions the judge computes (Qwen2.5-VL silently, Qwen3-VL
    with an error)."""
    import torch

    n = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for r, e in enumerate(batch):
        ids[r, :len(e.ids)] = torch.tensor(e.ids)
        labels[r, :len(e.labels)] = torch.tensor(e.labels)
        mask[r, :len(e.ids)] = 1
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels,
           "mm_token_type_ids": ((ids == image_token_id) & (mask == 1)).int()}
    pixels = [e.pixel_values for e in batch if e.pixel_values is not None]
    if pixels:
        out["pixel_values"] = torch.cat(pixels)
        out["image_grid_thw"] = torch.cat([e.grids for e in batch if e.grids is not None])
    return out
