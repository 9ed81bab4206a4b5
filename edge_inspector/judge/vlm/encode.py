"""Turning prompt segments into model inputs: token ids with each image expanded into its vision
tokens, pixel values and image grids; and the decision tokens' ids."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_inspector.judge.vlm.prompt import NO_WORDS, YES_WORDS, ImagePart, Segment


@dataclass(slots=True)
class Encoded:
    ids: list[int]
    pixel_values: object | None  # torch.Tensor (patches x features) or None without images
    grids: object | None  # torch.LongTensor (images x 3) or None


def to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's grey or BGR uint8 to RGB."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise ValueError(f"expected a grey (HxW) or BGR (HxWx3) uint8 image, got shape {image.shape}")


def segments_key(segments: Sequence[Segment], max_pixels: dict[str, int]) -> str:
    """A content hash of segments (text and image bytes): the prefix cache's key."""
    h = hashlib.sha256()
    for seg in segments:
        if isinstance(seg, str):
            h.update(b"T" + seg.encode())
        else:
            img = np.ascontiguousarray(seg.image)
            h.update(f"I{seg.role}:{img.shape}:{img.dtype}:{max_pixels[seg.role]}".encode())
            h.update(img.data)
    return h.hexdigest()


class PromptEncoder:
    def __init__(self, tokenizer, image_processor, config, max_pixels: dict[str, int], device, dtype) -> None:
        self.tok = tokenizer
        self.proc = image_processor
        self.max_pixels = max_pixels
        self.device, self.dtype = device, dtype
        self.image_token = config.image_token_id
        self.vision_start, self.vision_end = config.vision_start_token_id, config.vision_end_token_id
        factor = image_processor.patch_size * image_processor.merge_size
        self.min_pixels = factor * factor * 4
        self.yes_ids, self.no_ids = self._decision_ids()
        self.stop_ids = sorted({tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
                               - {None, tokenizer.unk_token_id})

    def _decision_ids(self) -> tuple[list[int], list[int]]:
        """First tokens of "yes"/"no" variants (with and without a leading space); single-token
        variants when there are any. Ids that both sides share are dropped."""
        def ids(words: Sequence[str]) -> set[int]:
            variants = [v for w in words for v in (w, " " + w)]
            enc = [self.tok.encode(v, add_special_tokens=False) for v in variants]
            single = {e[0] for e in enc if len(e) == 1}
            return single or {e[0] for e in enc if e}
        yes, no = ids(YES_WORDS), ids(NO_WORDS)
        return sorted(yes - no), sorted(no - yes)

    def encode(self, segments: Sequence[Segment]) -> Encoded:
        import torch

        ids: list[int] = []
        pixels, grids = [], []
        for seg in segments:
            if isinstance(seg, str):
                ids += self.tok.encode(seg, add_special_tokens=False)
                continue
            out = self._image(seg)
            grid = out["image_grid_thw"]
            n = int(grid.prod()) // (self.proc.merge_size ** 2)
            ids += [self.vision_start] + [self.image_token] * n + [self.vision_end]
            pixels.append(out["pixel_values"])
            grids.append(grid)
        if not pixels:
            return Encoded(ids, None, None)
        return Encoded(ids, torch.cat(pixels).to(self.device, self.dtype), torch.cat(grids).to(self.device))

    def _image(self, part: ImagePart):
        size = {"longest_edge": self.max_pixels[part.role], "shortest_edge": self.min_pixels}
        return self.proc(images=[to_rgb(part.image)], size=size, return_tensors="pt")

    def decode(self, token_rows) -> list[str]:
        """Each row up to its first stop token, as text."""
        stops = set(self.stop_ids)
        texts = []
        for row in token_rows:
            cut = next((i for i, t in enumerate(row) if t in stops), len(row))
            texts.append(self.tok.decode(row[:cut], skip_special_tokens=True))
        return texts
