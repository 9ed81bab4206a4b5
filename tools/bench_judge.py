"""Benchmark the VLM judge's engine, as ratios measured side by side in one run.

    python tools/bench_judge.py --cpu [--models DIR] [--repeats 5]
    python tools/bench_judge.py --gpu [--work DIR] [--no-awq]

Measured on one part (a frame, 2 zoomed crops, one known-good reference):

- k = 1, 3, 5 votes in one batched call (one prefill, k-wide decoding) against k sequential calls;
- the prefix key/value cache on against off (prompt encoding + prefill, no sampling);
- P(defective) only (one prefill, no sampling) against generating 5 votes;
- 5 votes with constrained decoding (the answer form masked token by token) against 5 free votes, and
  what the constraint adds per vote and per decode step.

Every answer runs ``max_new_tokens`` (EOS ignored), so the runs do the same work. ``--cpu`` uses the
tiny checkpoints (tools/make_tiny_models.py; built into a temporary directory unless ``--models``).
``--gpu`` builds a Qwen2.5-VL-3B-shaped model with random weights and its AWQ version
(tools/quantize_awq.py) and times a 1024x1024 frame + 2 crops + a reference with 5 votes, with the
GPU memory. Targets (GPU): 5 votes <= 1.3x one answer; prefix cache >= 1.8x faster one-shot prefill.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from judge_parts import synthetic_parts, zoom  # noqa: E402

from edge_inspector.judge.vlm.generation import DeadlineGuard  # noqa: E402
from edge_inspector.judge.vlm.prompt import build_prompt  # noqa: E402
from edge_inspector.recipe import load_recipe  # noqa: E402


def _medians(variants: dict, repeats: int, sync=lambda: None) -> dict[str, float]:
    """Median wall time (ms) of each variant, run interleaved (A B C A B C ...) so that drifting load
    on the machine hits every variant alike."""
    for fn in variants.values():
        fn()  # warm
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def bench_model(model_dir: Path, frame_side: int, repeats: int, max_new_tokens: int, device: str) -> list[tuple]:
    """Rows of (measure, ms, ratio text) for one checkpoint."""
    import math

    import torch

    from edge_inspector.judge.vlm.engine import Engine, SamplingSettings
    from edge_inspector.judge.vlm.loading import load_model

    loaded = load_model(model_dir, device=device)
    recipe = load_recipe(REPO / "configs/recipes/pcb.yaml")
    part = synthetic_parts(2, seed=3)[1]
    frame = cv2.resize(part.image, (frame_side, frame_side))
    reference = cv2.resize(cv2.imread(str(recipe.references[0]), cv2.IMREAD_GRAYSCALE), (frame_side, frame_side))
    crops = [zoom(part.image, part.boxes[0]), zoom(part.image, part.boxes[0], margin=48)]
    prompt = build_prompt(recipe, frame, crops, part.boxes[:1] * 2, [reference])
    px = {"frame": frame_side * frame_side, "reference": frame_side * frame_side, "crop": 448 * 448}
    sampling = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=max_new_tokens, seed=0, ignore_eos=True)
    cached = Engine(loaded, px, sampling, prefix_cache=True, constrained=False)
    uncached = Engine(loaded, px, sampling, prefix_cache=False, constrained=False)
    constrained = Engine(loaded, px, sampling, prefix_cache=True, constrained=True)
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)
    inf = DeadlineGuard(math.inf)
    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run(engine, k):
        return lambda: engine.run(prompt, k, inf)

    def sequential(k):
        return lambda: [cached.run(prompt, 1, inf) for _ in range(k)]

    m = _medians({"1": run(cached, 1), "3b": run(cached, 3), "3s": sequential(3), "5b": run(cached, 5),
                  "5s": sequential(5), "on": run(cached, 0), "off": run(uncached, 0),
                  "5c": run(constrained, 5)}, repeats, sync)
    rows = [("1 answer", m["1"], "1.00x")]
    for k in (3, 5):
        rows.append((f"{k} votes batched", m[f"{k}b"], f"{m[f'{k}b'] / m['1']:.2f}x one answer"))
        rows.append((f"{k} votes sequential", m[f"{k}s"], f"{m[f'{k}s'] / m[f'{k}b']:.2f}x batched"))
    rows.append(("prefill, prefix cache on", m["on"], ""))
    rows.append(("prefill, prefix cache off", m["off"], f"{m['off'] / m['on']:.2f}x cache on"))
    rows.append(("P(defective) only", m["on"], ""))
    rows.append(("generation, 5 votes", m["5b"], f"{m['5b'] / m['on']:.2f}x P only"))
    rows.append(("5 votes constrained", m["5c"], f"{m['5c'] / m['5b']:.2f}x free"))
    rows.append(("  constraint cost per vote", (m["5c"] - m["5b"]) / 5, "ms, median difference / 5"))
    c = constrained.run(prompt, 5, inf).timings_ms
    rows.append(("  constraint's own time, 5 votes", c["constrain_ms"],
                 f"{1e3 * c['constrain_ms'] / max_new_tokens:.0f} us per step, "
                 f"{100 * c['constrain_ms'] / c['decode_ms']:.1f} % of decoding"))
    g = cached.run(prompt, 0, inf)
    rows.append(("prompt tokens (suffix / prefix)", float(g.prefill_tokens),
                 f"prefix {len(cached._prefix.enc.ids)} tokens cached"))
    if loaded.device.type == "cuda":
        rows.append(("peak GPU memory (MiB)", torch.cuda.max_memory_allocated() / 2**20, ""))
    del cached, uncached, constrained, loaded
    return rows


def _print(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    print(f"  {'measure':34s} {'median ms':>10s}  ratio")
    for name, ms, ratio in rows:
        print(f"  {name:34s} {ms:10.1f}  {ratio}")


def cpu(models: Path | None, repeats: int) -> None:
    import torch

    from make_tiny_models import build_all

    torch.set_num_threads(1)  # steadier on a small shared machine; the ratios are what count

    tmp = None
    if models is None:
        tmp = tempfile.TemporaryDirectory()
        models = Path(tmp.name)
        build_all(models, awq=True)
    for name in ("qwen2_5_vl", "qwen2_5_vl-awq", "qwen3_vl"):
        if (models / name).is_dir():
            _print(f"CPU, tiny {name}, 448x448 frame + 2 crops + reference, 24 new tokens",
                   bench_model(models / name, 448, repeats, 24, "cpu"))


def gpu(work: Path, awq: bool, repeats: int) -> None:
    import torch

    from make_tiny_models import build_tokenizer, qwen2_5_vl_config, save_vlm

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU")
    src = work / "qwen2_5_vl-3b-random"
    if not src.is_dir():
        tok = build_tokenizer()
        cfg = qwen2_5_vl_config(tok, "3b")
        cfg.dtype = "bfloat16"
        save_vlm(cfg, tok, 14, src, teach=False)
    name = torch.cuda.get_device_name()
    _print(f"GPU {name}, Qwen2.5-VL-3B shape bf16, 1024x1024 frame + 2 crops + reference, 5 votes x 32 tokens",
           bench_model(src, 1024, repeats, 32, "cuda"))
    if awq:
        from quantize_awq import quantize

        dst = work / "qwen2_5_vl-3b-random-awq"
        if not dst.is_dir():
            quantize(src, dst, images=None, samples=8, group_size=128)
        torch.cuda.empty_cache()
        _print(f"GPU {name}, Qwen2.5-VL-3B shape AWQ 4-bit, same part", bench_model(dst, 1024, repeats, 32, "cuda"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--cpu", action="store_true", help="tiny checkpoints on the CPU")
    mode.add_argument("--gpu", action="store_true", help="3B-shaped random checkpoints on the GPU")
    ap.add_argument("--models", type=Path, help="--cpu: a directory from make_tiny_models.py")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edge-inspector-bench",
                    help="--gpu: where the random 3B checkpoints are written (reused)")
    ap.add_argument("--no-awq", action="store_true", help="--gpu: skip the AWQ checkpoint")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    np.random.seed(0)
    if args.cpu:
        cpu(args.models, args.repeats)
    else:
        gpu(args.work, not args.no_awq, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
