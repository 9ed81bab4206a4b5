"""LoRA fine-tune throughput and peak memory at the real model's shapes, offline.

    python tools/bench_train.py --size 3b --device cuda [--batch 1] [--image-sides 1024,1024,448]
                                [--text-tokens 800] [--answer-tokens 32] [--rank 16] [--steps 10]
                                [--gradient-checkpointing] [--vision] [--json]
    python tools/bench_train.py --size tiny --device cpu --steps 3      # a smoke run on any machine

The model is Qwen2.5-VL built from its config with random weights (``--size 3b``: the shapes of
Qwen2.5-VL-3B, from tools/make_tiny_models.py; nothing is downloaded), LoRA is put on it by the
production code (:func:`edge_inspector.learn.train.build_peft`: the language model's Linear layers,
the vision tower too with ``--vision``), and each step is a forward, backward and AdamW step on a
batch shaped like the judge's prompt: square images of ``--image-sides`` pixels (reference, frame,
crops) expanded into their vision tokens, ``--text-tokens`` of text (system
text, recipe, labels), and the loss on the last ``--answer-tokens`` (the answer). Reports steps/s,
tokens/s and the peak memory (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS), after
``--warmup`` untimed steps. Random weights cost what trained ones cost: the numbers are the real
model's, its answers are not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_batch(config, batch: int, sides: list[int], text_tokens: int, answer_tokens: int, device, seed: int):
    """Token ids with a run of image tokens (between vision start/end) for each image side in ``sides``,
    pixel values and grids of the right shapes, labels on the last ``answer_tokens`` positions."""
    import torch

    v = config.vision_config
    patch, merge, temporal = v.patch_size, v.spatial_merge_size, v.temporal_patch_size
    g = torch.Generator().manual_seed(seed)
    vocab = config.text_config.vocab_size
    specials = {config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id}

    def text(n: int) -> list[int]:  # random text tokens, never one of the vision specials
        return [t if t not in specials else 0 for t in torch.randint(0, vocab, (n,), generator=g).tolist()]

    cells = [max(1, round(s / (patch * merge))) * merge for s in sides]  # patches per side, merge multiple
    grids_one = [[1, c, c] for c in cells]
    tokens_each = [h * w // merge ** 2 for _, h, w in grids_one]
    rows, grids = [], []
    per_gap = text_tokens // (len(sides) + 1)
    for _ in range(batch):
        ids = []
        for n in tokens_each:
            ids += text(per_gap)
            ids += [config.vision_start_token_id] + [config.image_token_id] * n + [config.vision_end_token_id]
        grids += grids_one
        rows.append(ids + text(text_tokens - per_gap * len(sides) + answer_tokens))
    input_ids = torch.tensor(rows)
    labels = torch.full_like(input_ids, -100)
    labels[:, -answer_tokens:] = input_ids[:, -answer_tokens:]
    out = {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids).to(device),
           "labels": labels.to(device), "mm_token_type_ids": (input_ids == config.image_token_id).int().to(device)}
    if sides:
        n_patches = sum(t * h * w for t, h, w in grids)
        out["pixel_values"] = torch.randn(n_patches, 3 * temporal * patch * patch, generator=g).to(device)
        out["image_grid_thw"] = torch.tensor(grids).to(device)
    return out, tokens_each


def build_model(size: str, device, dtype):
    import torch
    from make_tiny_models import build_tokenizer, qwen2_5_vl_config
    from transformers import AutoModelForImageTextToText

    config = qwen2_5_vl_config(build_tokenizer(), size)
    torch.manual_seed(0)
    with torch.device(device):  # initialise the weights where they will live (3B on a CPU takes minutes)
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model, config


def peak_memory(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def run(args) -> dict:
    import torch

    from edge_inspector.learn.train import LoraSettings, build_peft

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype) if args.dtype != "auto" else (
        torch.bfloat16 if device.type == "cuda" else torch.float32)
    t0 = time.perf_counter()
    model, config = build_model(args.size, device, dtype)
    model = build_peft(model, LoraSettings(rank=args.rank, vision=args.vision))
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    build_s = time.perf_counter() - t0
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    sides = [int(x) for x in args.image_sides.split(",") if x.strip()]
    batch, n_img = make_batch(config, args.batch, sides, args.text_tokens, args.answer_tokens, device, seed=0)
    model.train()

    def step():
        out = model(**batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        return out.loss.detach()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, t = [], time.perf_counter()
    for _ in range(args.steps):
        losses.append(step())
    sync()
    elapsed = time.perf_counter() - t
    seq = int(batch["input_ids"].shape[1])
    return {
        "size": args.size, "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda"
        else None, "dtype": str(dtype).removeprefix("torch."), "batch": args.batch, "seq_len": seq,
        "image_sides": sides, "image_tokens": n_img, "rank": args.rank,
        "vision": args.vision, "gradient_checkpointing": args.gradient_checkpointing,
        "params": sum(p.numel() for p in model.parameters()), "trainable_params": sum(p.numel() for p in trainable),
        "steps": args.steps, "seconds": elapsed, "steps_per_s": args.steps / elapsed,
        "tokens_per_s": args.steps * args.batch * seq / elapsed, "peak_memory_bytes": peak_memory(device),
        "peak_memory_gib": peak_memory(device) / 2**30, "build_seconds": build_s,
        "losses_finite": all(bool(torch.isfinite(x)) for x in losses),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="3b", choices=["tiny", "3b"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--image-sides", default="1024,1024,448", metavar="S,S,...", help="each image's side in "
                    "pixels (square): default a 1-Mpixel reference and frame and one 448-pixel crop, the judge's "
                    "limits; '' for none")
    ap.add_argument("--text-tokens", type=int, default=800, help="text tokens per conversation, answer excluded")
    ap.add_argument("--answer-tokens", type=int, default=32, help="answer tokens (the loss is on these)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--vision", action="store_true", help="adapters on the vision tower too")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    # peft and transformers import gptqmodel where it is installed, which prints a banner on file
    # descriptor 1: stdout is kept for the result
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        r = run(args)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['size']} on {r['gpu'] or r['device']} ({r['dtype']}): batch {r['batch']} x {r['seq_len']} tokens "
              f"(images of {'+'.join(map(str, r['image_tokens'])) or 0} tokens), LoRA rank {r['rank']} "
              f"({r['trainable_params']:,} of {r['params']:,} params): {r['steps_per_s']:.3f} steps/s, "
              f"{r['tokens_per_s']:.0f} tokens/s, peak memory {r['peak_memory_gib']:.2f} GiB")
    return 0 if r["losses_finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
