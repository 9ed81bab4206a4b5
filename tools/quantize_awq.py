"""Quantize a Qwen-VL checkpoint to AWQ 4-bit with gptqmodel, calibrating on recorded images.

    python tools/quantize_awq.py SRC_DIR OUT_DIR --images DIR [--group-size 128] [--samples 64]
    python tools/quantize_awq.py RUN_DIR/merged RUN_DIR/awq --calib-dataset DATASET_DIR

``--calib-dataset`` calibrates on a training dataset's conversations (``dataset export``; the judge's
own prompt with its reference, frame and crop images, and the answer), so that the activations AWQ
scales for are the ones the fine-tuned model sees; ``--images`` on a folder of frames with a short
prompt; neither: synthetic bare-PCB frames.

Only the language model's decoder layers are quantized (gptqmodel's Qwen-VL definition); the vision
tower stays in full precision, and the written config says so in its skip list
(``modules_to_not_convert``, under both the transformers-5 and the legacy module name), because the
AWQ loader would otherwise replace the tower's Linear layers too. The result is the AWQ GEMM format
(zero point, as published Qwen AWQ checkpoints), loadable by transformers + gptqmodel and by vLLM.
Run tools/parity.py on every quantization.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

VISION_SKIP = ["model.visual", "visual"]
_PROMPT = "Inspect this part for defects. Answer with defective: yes or no."


def _calibration_images(images: Path | None, n: int):
    """PIL images: recorded frames from ``images`` (a folder), else synthetic bare-PCB frames."""
    from PIL import Image

    if images is not None:
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
        if not files:
            raise SystemExit(f"no images in {images}")
        return [Image.open(p).convert("RGB") for p in files[:n]]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edge_inspector.synth.pcb import BoardDesign, make_board

    design = BoardDesign(seed=1)
    return [Image.fromarray(make_board(design, seed=i, defects=i % 2).image).convert("RGB").resize((224, 224))
            for i in range(n)]


def _dataset_calibration(dataset: Path, n: int) -> list[list[dict]]:
    """The dataset's conversations (train, then val), each image as an RGB PIL image."""
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edge_inspector.learn.dataset import load_dataset

    data = load_dataset(dataset)
    calib = []
    for ex in (data.train + data.val)[:n]:
        messages = []
        for m in ex.messages:
            content = m["content"]
            if isinstance(content, list):
                content = [{"type": "image", "image": Image.open(p["image"]).convert("RGB")}
                           if p["type"] == "image" else p for p in content]
            messages.append({"role": m["role"], "content": content})
        calib.append(messages)
    return calib


def fix_skip_list(out: Path) -> None:
    """Write the vision tower into the checkpoint's skip list (gptqmodel writes none)."""
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    q = cfg["quantization_config"]
    q["modules_to_not_convert"] = sorted(set(q.get("modules_to_not_convert") or []) | set(VISION_SKIP))
    cfg_path.write_text(json.dumps(cfg, indent=2))


def quantize(src: Path, out: Path, images: Path | None = None, samples: int = 16, group_size: int = 128,
             bits: int = 4, calib_dataset: Path | None = None) -> Path:
    """Quantize ``src`` into ``out``; returns ``out``. Runs on CPU (torch AWQ kernel) or CUDA."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    import torch
    from gptqmodel import BACKEND, AWQConfig, GPTQModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edge_inspector.judge.vlm.processor import register_image_only_processors

    register_image_only_processors()
    cuda = torch.cuda.is_available()
    qcfg = AWQConfig(bits=bits, group_size=group_size, sym=False, device="cuda" if cuda else "cpu")
    model = GPTQModel.load(str(src), quantize_config=qcfg, dtype=torch.float16 if cuda else torch.bfloat16)
    if calib_dataset is not None:
        calib = _dataset_calibration(calib_dataset, samples)
    else:
        calib = [[{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": _PROMPT}]}]
                 for img in _calibration_images(images, samples)]
    model.quantize(calib, batch_size=1, backend=BACKEND.AUTO if cuda else BACKEND.AWQ_TORCH)
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
                 "generation_config.json"):
        if (src / name).exists() and not (out / name).exists():
            shutil.copy2(src / name, out / name)
    if not (src / "processor_config.json").exists():  # gptqmodel saved our image-only processor's name
        (out / "processor_config.json").unlink(missing_ok=True)
    fix_skip_list(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="the full-precision checkpoint directory")
    ap.add_argument("out", type=Path, help="where to write the AWQ checkpoint")
    ap.add_argument("--images", type=Path, help="a folder of recorded frames to calibrate on "
                                                "(default: synthetic bare-PCB frames)")
    ap.add_argument("--calib-dataset", type=Path, metavar="DIR", help="calibrate on a training dataset's "
                    "conversations (dataset export); excludes --images")
    ap.add_argument("--samples", type=int, default=64, help="calibration images (or conversations) to use")
    ap.add_argument("--group-size", type=int, default=128, help="AWQ group size")
    args = ap.parse_args(argv)
    if args.images and args.calib_dataset:
        ap.error("--images and --calib-dataset exclude each other")
    quantize(args.src, args.out, args.images, args.samples, args.group_size, calib_dataset=args.calib_dataset)
    print(f"wrote {args.out}; now run: python tools/parity.py {args.src} {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
