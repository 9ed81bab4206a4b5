"""Benchmark of the regions stage: ms per frame for each model at 640x640 and 2048x2048.

    python tools/bench_regions.py [--repeats 5] [--sizes 640 2048] [--json out.json]
    python tools/bench_regions.py --device cuda --sam-shape vit-b      # on a GPU machine

Rows: the variation model's registration alone, then the variation model (one-shot, synthetic boards with defects), the texture model (synthetic
brushed surfaces with pits), each alone and followed by SAM refinement + zoom. SAM is the tiny random
model of tools/make_tiny_models.py on CPU, or a random model of SAM ViT-B's shapes (``--sam-shape
vit-b``, built from SamConfig's defaults: nothing is downloaded) for a GPU. Every SAM model is saved
and loaded back through the station's loading path (regions.sam_dir). Timings are medians after a
warm-up frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))


def surface(seed: int, size: int, pits: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=12, sigmaY=0.8)
    img = 150 + 12 * streaks / (streaks.std() + 1e-6) + rng.normal(0, 3, (size, size))
    for _ in range(pits):
        x, y, r = rng.integers(size // 8, size - size // 8, 2).tolist() + [max(6, size // 60)]
        cv2.circle(img, (x, y), r, 60, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def boards(size: int):
    from edge_inspector.synth.pcb import BoardDesign, make_board, reference_board

    design = BoardDesign(11)
    def scale(im: np.ndarray) -> np.ndarray:
        return im if im.shape[0] == size else cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC)

    return scale(reference_board(design).image), [scale(make_board(design, 100 + i, defects=2).image)
                                                for i in range(3)]


def save_sam(shape: str, root: Path) -> Path:
    if shape == "tiny":
        from make_tiny_models import save_sam as tiny

        return tiny(root / "sam-tiny")
    import torch
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    torch.manual_seed(0)
    out = root / "sam-vit-b"
    SamModel(SamConfig()).save_pretrained(out)  # SamConfig's defaults are SAM ViT-B's shapes
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(out)
    return out


def time_finder(finder, frames: list[np.ndarray], repeats: int) -> tuple[float, int]:
    from edge_inspector.capture.base import PartFactory

    parts = PartFactory(1.0)
    finder.find(parts.trigger("bench").frame(frames[0]))  # warm-up
    times, boxes = [], 0
    for i in range(repeats):
        frame = parts.trigger("bench").frame(frames[i % len(frames)])
        t = time.perf_counter()
        r = finder.find(frame)
        times.append((time.perf_counter() - t) * 1e3)
        boxes += len(r.boxes)
    return statistics.median(times), boxes


def time_registration(registrar, frames: list[np.ndarray], repeats: int) -> float:
    """The variation model's registration alone (homography, coarse to fine), median ms."""
    from edge_inspector.imageio import to_gray

    grays = [to_gray(f) for f in frames]
    registrar.register(grays[0])  # warm-up
    times = []
    for i in range(max(repeats, 5)):
        t = time.perf_counter()
        registrar.register(grays[i % len(grays)])
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where SAM runs")
    ap.add_argument("--sam-shape", choices=["tiny", "vit-b", "none"], default="tiny")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)

    from edge_inspector.logs import configure
    from edge_inspector.regions.refine import RefinedFinder
    from edge_inspector.regions.sam import SamRefiner, SamSettings
    from edge_inspector.regions.texture import TextureConfig, TextureFinder
    from edge_inspector.regions.variation import VariationConfig, VariationFinder

    configure("warning", "console")
    tmp = tempfile.TemporaryDirectory(prefix="bench-regions-")
    sam = None
    if args.sam_shape != "none":
        sam = SamRefiner(save_sam(args.sam_shape, Path(tmp.name)), SamSettings(device=args.device,
                                                                              min_mask_score=0.0))
    rows = []
    for size in args.sizes:
        ref, defective = boards(size)
        var_cfg = VariationConfig()
        tex_cfg = TextureConfig()
        t = time.perf_counter()
        variation = VariationFinder(var_cfg, [ref])
        fit_var = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        texture = TextureFinder(tex_cfg, [surface(s, size) for s in range(3)])
        fit_tex = (time.perf_counter() - t) * 1e3
        pitted = [surface(10 + i, size, pits=2) for i in range(3)]
        rows.append({"model": "registration", "size": size, "ms": round(time_registration(
            variation.model.registrar, defective, args.repeats), 1), "fit_ms": round(fit_var),
            "boxes_per_frame": 0, "device": "cpu"})
        cases = [("variation", variation, var_cfg, defective, fit_var),
                 ("texture", texture, tex_cfg, pitted, fit_tex)]
        for name, inner, cfg, frames, fit_ms in cases:
            ms, boxes = time_finder(RefinedFinder(inner, cfg), frames, args.repeats)
            rows.append({"model": name, "size": size, "ms": round(ms, 1), "fit_ms": round(fit_ms),
                         "boxes_per_frame": round(boxes / args.repeats, 1), "device": "cpu"})
            if sam is not None:
                ms, boxes = time_finder(RefinedFinder(inner, cfg, sam), frames, args.repeats)
                rows.append({"model": f"{name}+sam-{args.sam_shape}", "size": size, "ms": round(ms, 1),
                             "fit_ms": round(fit_ms), "boxes_per_frame": round(boxes / args.repeats, 1),
                             "device": args.device})
    print(f"{'model':<24} {'frame':>10} {'ms/frame':>9} {'fit ms':>8} {'boxes':>6}  device")
    for r in rows:
        print(f"{r['model']:<24} {r['size']:>4}x{r['size']:<5} {r['ms']:>9} {r['fit_ms']:>8} "
              f"{r['boxes_per_frame']:>6}  {r['device']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
