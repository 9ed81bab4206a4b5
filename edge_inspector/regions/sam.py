"""SAM refinement: snap the anomaly map's boxes to the object's boundary.

SAM (transformers' ``SamModel``, from a local checkpoint directory only) is prompted at the peaks of
the anomaly map that lie in the map's boxes: a point at the peak, the map's box around it, or both.
One image embedding per frame, every prompt decoded in one batch; the best of SAM's three masks per
prompt (by its predicted IoU). Masks that are unsure, that miss their peak's box or that cover most
of the frame are dropped (that peak keeps the map's box). Overlapping masks are merged by an NMS of
our own (the mask-generation pipeline's needs torchvision, which this platform does not have), and
each merged mask becomes a tight box scored by the anomaly map under it.

torch and transformers are imported when a refiner is built, never at module import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import structlog
from pydantic import Field

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Box
from edge_inspector.errors import StartupError
from edge_inspector.regions.boxes import box_iou
from edge_inspector.regions.peaks import Peak, find_peaks

log = structlog.get_logger(__name__)


class SamSettings(ConfigModel):
    prompt: Literal["points", "boxes", "both"] = Field("both", description="What SAM is given per peak: "
                                                        "a point, the map's box around it, or both.")
    max_prompts: int = Field(8, ge=1, le=256, description="At most this many peaks are prompted per frame.")
    peak_distance_px: int = Field(12, ge=1, description="Peaks closer than this (frame pixels) are one.")
    min_mask_score: float = Field(0.5, ge=0, le=1, description="SAM's predicted IoU under which a mask "
                                  "is not trusted (the map's box is kept).")
    max_mask_fraction: float = Field(0.25, gt=0, le=1, description="A mask covering more than this "
                                     "fraction of the frame is dropped (background, not a defect).")
    nms_iou: float = Field(0.5, gt=0, le=1, description="Masks that overlap more than this (IoU, or "
                           "the smaller one mostly inside the larger) are merged.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where SAM runs; auto: the GPU "
                                                   "when there is one.")


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: the indices kept, best score first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = list(np.argsort(-np.asarray(scores, np.float64), kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            ious = box_iou(boxes[i:i + 1], boxes[order])[0]
            order = [j for j, v in zip(order, ious) if v <= iou]
    return keep


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


@dataclass(slots=True)
class _Mask:
    mask: np.ndarray  # bool, frame size
    box: tuple[int, int, int, int]
    score: float  # the anomaly peak's value
    peaks: list[Peak]


def merge_masks(masks: list[_Mask], iou: float) -> list[_Mask]:
    """Our NMS over masks: strongest first; a mask that overlaps a kept one more than ``iou`` (mask
    IoU, or intersection over the smaller mask) is merged into it."""
    kept: list[_Mask] = []
    for m in sorted(masks, key=lambda m: -m.score):
        for k in kept:
            if box_iou(np.array(m.box), np.array(k.box))[0, 0] == 0:
                continue
            x1, y1 = min(m.box[0], k.box[0]), min(m.box[1], k.box[1])
            x2, y2 = max(m.box[2], k.box[2]), max(m.box[3], k.box[3])
            a, b = m.mask[y1:y2, x1:x2], k.mask[y1:y2, x1:x2]
            inter = np.count_nonzero(a & b)
            union = np.count_nonzero(a | b)
            smaller = min(np.count_nonzero(a), np.count_nonzero(b))
            if inter / max(union, 1) > iou or inter / max(smaller, 1) > 0.8:
                k.mask[y1:y2, x1:x2] |= a
                bx1, by1, bx2, by2 = _mask_box(k.mask[y1:y2, x1:x2])  # both masks lie in this window
                k.box = (bx1 + x1, by1 + y1, bx2 + x1, by2 + y1)
                k.peaks += m.peaks
                break
        else:
            kept.append(_Mask(m.mask.copy(), m.box, m.score, list(m.peaks)))
    return kept


def _pick_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise StartupError("regions.sam.device is cuda but no CUDA GPU is available")
    return torch.device(device)


class SamRefiner:
    """A SAM checkpoint loaded once; :meth:`refine` turns a frame's map boxes into SAM boxes."""

    def __init__(self, model_dir: Path, settings: SamSettings) -> None:
        self.dir = Path(model_dir)
        self.settings = settings
        where = f"regions.sam_dir {self.dir}"
        if not self.dir.is_dir():
            raise StartupError(f"{where}: not a directory (a local SAM checkpoint is needed; nothing is "
                               "downloaded)")
        cfg_path = self.dir / "config.json"
        if not cfg_path.is_file():
            raise StartupError(f"{where}: no config.json (not a transformers checkpoint directory)")
        try:
            import torch
            from transformers import AutoConfig, SamModel, SamProcessor
        except ImportError as exc:
            raise StartupError(f"{where}: SAM needs torch and transformers ({exc})") from exc
        try:
            config = AutoConfig.from_pretrained(self.dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise StartupError(f"{where}: config.json is not a valid model config: {exc}") from exc
        if config.model_type != "sam":
            raise StartupError(f"{where}: a {config.model_type!r} checkpoint, expected a SAM ('sam') one")
        self.device = _pick_device(settings.device)
        try:
            self.model = SamModel.from_pretrained(self.dir, local_files_only=True).to(self.device).eval()
            self.processor = SamProcessor.from_pretrained(self.dir, local_files_only=True)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise StartupError(f"{where}: cannot load the checkpoint: {type(exc).__name__}: {exc}") from exc
        self._torch = torch
        digest = hashlib.sha256(cfg_path.read_bytes())
        for w in sorted(self.dir.glob("*.safetensors"))[:4]:
            digest.update(str(w.stat().st_size).encode())
        self.fingerprint = "sam-" + digest.hexdigest()[:10]
        log.info("sam_loaded", dir=str(self.dir), device=str(self.device))

    def refine(self, image: np.ndarray, anomaly_map: np.ndarray, threshold: float,
               map_boxes: tuple[Box, ...]) -> list[Box]:
        """SAM boxes for the peaks inside ``map_boxes``; the map boxes SAM did not replace are kept."""
        s = self.settings
        inside = np.zeros(anomaly_map.shape, bool)
        for b in map_boxes:
            inside[b.y1:b.y2, b.x1:b.x2] = True
        peaks = find_peaks(np.where(inside, anomaly_map, 0), threshold, s.max_prompts, s.peak_distance_px)
        if not peaks:
            return list(map_boxes)
        masks = self._masks(image, peaks)
        h, w = anomaly_map.shape
        accepted: list[_Mask] = []
        for peak, (mask, score) in zip(peaks, masks):
            box = _mask_box(mask)
            px1, py1, px2, py2 = peak.box
            if (box is None or score < s.min_mask_score or mask.sum() > s.max_mask_fraction * h * w
                    or not mask[py1:py2, px1:px2].any()):
                continue
            accepted.append(_Mask(mask, box, peak.value, [peak]))
        merged = merge_masks(accepted, s.nms_iou)
        out = []
        for m in merged:
            x1, y1, x2, y2 = m.box
            values = anomaly_map[y1:y2, x1:x2][m.mask[y1:y2, x1:x2]]
            score = max(float(values.max()) if values.size else 0.0, max(p.value for p in m.peaks))
            out.append(Box(x1, y1, x2, y2, score=score, area_px=int(np.count_nonzero(m.mask[y1:y2, x1:x2]))))
        # a map box none of whose accepted peaks fell inside it stays as the map found it
        used = [p for m in merged for p in m.peaks]
        for b in map_boxes:
            if not any(b.x1 <= p.x < b.x2 and b.y1 <= p.y < b.y2 for p in used):
                out.append(b)
        return sorted(out, key=lambda b: -b.score)

    def _masks(self, image: np.ndarray, peaks: list[Peak]) -> list[tuple[np.ndarray, float]]:
        """The best mask (frame size, bool) and its predicted IoU for each peak: one embedding, one
        batch of prompts."""
        import cv2

        torch = self._torch
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        inputs = self.processor(images=rgb, return_tensors="pt")
        oh, ow = (int(v) for v in inputs["original_sizes"][0])
        rh, rw = (int(v) for v in inputs["reshaped_input_sizes"][0])
        sx, sy = rw / ow, rh / oh
        kw = {}
        if self.settings.prompt in ("points", "both"):
            pts = [[[(p.x + 0.5) * sx, (p.y + 0.5) * sy]] for p in peaks]
            kw["input_points"] = torch.tensor([pts], dtype=torch.float32, device=self.device)
            kw["input_labels"] = torch.ones((1, len(peaks), 1), dtype=torch.long, device=self.device)
        if self.settings.prompt in ("boxes", "both"):
            bxs = [[p.box[0] * sx, p.box[1] * sy, p.box[2] * sx, p.box[3] * sy] for p in peaks]
            kw["input_boxes"] = torch.tensor([bxs], dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
            embeddings = self.model.get_image_embeddings(pixel_values)
            out = self.model(image_embeddings=embeddings, multimask_output=True, **kw)
            iou = out.iou_scores[0]  # prompts x 3
            best = iou.argmax(-1)
            low = out.pred_masks[0, torch.arange(len(peaks), device=iou.device), best]  # prompts x 256 x 256
            full = self.processor.post_process_masks(
                low[None, :, None].float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"])[0][:, 0]
        scores = iou.gather(-1, best[:, None])[:, 0].float().cpu().numpy()
        return [(full[i].numpy().astype(bool), float(scores[i])) for i in range(len(peaks))]
