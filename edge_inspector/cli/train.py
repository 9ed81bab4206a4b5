"""``edge-inspector train``: LoRA fine-tune of the judge's model on an exported dataset, and
``edge-inspector train merge RUN_DIR``: the adapter merged into a full checkpoint (docs/learning.md).

    edge-inspector train --dataset DIR --base MODEL_DIR --out RUN_DIR [--steps N] [--lr LR] [--rank R]
                         [--batch B] [--vision] [--resume]
    edge-inspector train --out RUN_DIR --resume [--steps N]
    edge-inspector train merge RUN_DIR [--out DIR]

The result (run directory, losses, val loss) is printed on stdout (``--json`` for JSON); the
progress bar and the per-step loss log go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_inspector.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("train", help="LoRA fine-tune the judge's model on an exported dataset (or: train merge)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, metavar="DIR", help="a dataset directory (dataset export)")
    p.add_argument("--base", type=Path, metavar="MODEL_DIR", help="the full-precision Qwen-VL checkpoint to tune")
    p.add_argument("--out", type=Path, metavar="RUN_DIR", help="the run directory")
    p.add_argument("--steps", type=int, help="optimizer steps in all (default 200; on --resume the run's)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 2e-4)")
    p.add_argument("--rank", type=int, help="LoRA rank (default 16; alpha is twice the rank)")
    p.add_argument("--alpha", type=float, help="LoRA alpha (default 2 x rank)")
    p.add_argument("--dropout", type=float, help="LoRA dropout (default 0)")
    p.add_argument("--batch", type=int, help="conversations per step (default 1)")
    p.add_argument("--seed", type=int, help="the data order's seed (default 0)")
    p.add_argument("--save-every", type=int, default=50, metavar="N", help="checkpoint every N steps (default 50)")
    p.add_argument("--max-pixels", type=int, help="largest image shown to the model, in pixels (default 1048576, "
                                                  "the judge's frame limit)")
    p.add_argument("--vision", action="store_true", default=None,
                   help="put adapters on the vision tower too (default: frozen)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass (less memory, about 30%% slower)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="the base weights' dtype in training (auto: bfloat16 on a GPU, float32 on a CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)
    actions = p.add_subparsers(dest="train_action", metavar="ACTION")
    m = actions.add_parser("merge", help="merge a finished run's adapter into its base: RUN_DIR/merged/")
    m.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    m.add_argument("--out", dest="merge_out", type=Path, metavar="DIR", help="default: RUN_DIR/merged")
    m.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    m.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    m.set_defaults(func=cmd_merge)


_DEFAULTS = {"steps": 200, "lr": 2e-4, "rank": 16, "alpha": None, "dropout": 0.0, "batch": 1, "seed": 0,
             "max_pixels": 1024 * 1024, "vision": False, "gradient_checkpointing": False}


def settings_from(args: argparse.Namespace, recorded: dict | None):
    """TrainSettings from the options; on --resume the run's own settings fill what is not given."""
    from edge_inspector.learn.train import LoraSettings, TrainSettings

    rec = dict(recorded or {})
    lora_rec = rec.pop("lora", {}) or {}
    flat = {**{k: v for k, v in rec.items() if k in _DEFAULTS}, **{f: lora_rec.get(f) for f in ("rank", "alpha",
            "dropout", "vision") if f in lora_rec}}
    val = {}
    for key, default in _DEFAULTS.items():
        given = getattr(args, key)
        val[key] = given if given is not None else flat.get(key, default)
    return TrainSettings(steps=val["steps"], lr=val["lr"], batch=val["batch"], seed=val["seed"],
                         save_every=args.save_every, max_pixels=val["max_pixels"],
                         gradient_checkpointing=bool(val["gradient_checkpointing"]),
                         weight_decay=rec.get("weight_decay", 0.0), grad_clip=rec.get("grad_clip", 1.0),
                         lora=LoraSettings(rank=val["rank"], alpha=val["alpha"], dropout=val["dropout"],
                                           vision=bool(val["vision"])))


def cmd_train(args: argparse.Namespace) -> int:
    from edge_inspector.logs import configure, stdout_to_log

    configure(args.log_level, "console")
    from edge_inspector.learn.train import read_run, train

    if args.out is None:
        raise ConfigError("train: --out RUN_DIR is required")
    recorded = None
    if args.resume:
        run = read_run(args.out)
        args.dataset = args.dataset or Path(run["dataset"])
        args.base = args.base or Path(run["base"])
        recorded = run.get("settings") or {}
        args.steps = args.steps if args.steps is not None else run.get("target_steps")
    for flag in ("dataset", "base"):
        if getattr(args, flag) is None:
            raise ConfigError(f"train: --{flag} is required")
    settings = settings_from(args, recorded)
    progress = not args.no_progress and sys.stderr.isatty()
    with stdout_to_log("train"):  # stdout carries the result only (gptqmodel prints a banner on import)
        result = train(args.dataset, args.base, args.out, settings, resume=args.resume, device=args.device,
                       dtype=args.dtype, progress=progress)
    summary = {"run_dir": str(result.run_dir), "steps": len(result.loss),
               "first_loss": result.loss[0] if result.loss else None,
               "last_loss": result.loss[-1] if result.loss else None, "val_loss_before": result.val_loss_before,
               "val_loss": result.val_loss, "seconds": round(result.seconds, 1),
               "adapter": str(result.run_dir / "adapter")}
    _emit(summary, args.json)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from edge_inspector.logs import configure, stdout_to_log

    configure(args.log_level, "console")
    from edge_inspector.learn.merge import merge

    with stdout_to_log("train-merge"):
        out = merge(args.run_dir, args.merge_out, device=args.device)
    _emit({"run_dir": str(args.run_dir), "merged": str(out)}, args.json)
    return 0


def _emit(summary: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        sys.stdout.write("".join(f"{k}: {v}\n" for k, v in summary.items()))
