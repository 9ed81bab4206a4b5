"""Merging a run's LoRA adapter into its base: a full checkpoint the judge loads and AWQ quantizes.

The base is loaded by the judge's loader in float32 (the merge adds ``B @ A * scale`` to each
weight, exactly once), the adapter put on it by ``peft``, merged and unloaded, and the result saved
in the base's own dtype into ``RUN_DIR/merged/`` together with the base's tokenizer, image processor
and chat template files, so that ``judge.model_dir: RUN_DIR/merged`` works as is. ``run.json`` gets
``"merged": "merged"``; ``merged/edge_inspector_run.json`` says where the weights came from.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import structlog

from edge_inspector.learn.train import ADAPTER, RUN_FILE, RunError, _write_json, read_run

log = structlog.get_logger("edge_inspector.learn.merge")

MERGED = "merged"
PROVENANCE = "edge_inspector_run.json"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "config.json")


def _base_dtype(base: Path) -> str:
    cfg = json.loads((base / "config.json").read_text(encoding="utf-8"))
    text = cfg.get("text_config") or {}
    return str(cfg.get("dtype") or cfg.get("torch_dtype") or text.get("dtype") or text.get("torch_dtype")
               or "float32")


def merge(run_dir: Path, out: Path | None = None, device: str = "cpu") -> Path:
    """Merge ``run_dir``'s adapter into its base; returns the merged checkpoint directory."""
    t0 = time.monotonic()
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    if not run.get("finished") or not (run_dir / ADAPTER / "adapter_config.json").is_file():
        raise RunError(f"{run_dir}: the run has not finished (no {ADAPTER}/): finish it with "
                       "'edge-inspector train --resume' first")
    import torch
    from peft import PeftModel

    from edge_inspector.judge.vlm.loading import load_model

    base = Path(run["base"])
    out = Path(out) if out is not None else run_dir / MERGED
    loaded = load_model(base, device=device, dtype="float32")
    model = PeftModel.from_pretrained(loaded.model, run_dir / ADAPTER, is_trainable=False)
    merged = model.merge_and_unload()
    dtype = _base_dtype(base)
    merged = merged.to(getattr(torch, dtype, torch.float32))
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    for f in sorted(base.iterdir()):  # tokenizer, image processor, chat template, generation config
        if f.is_file() and f.name not in _WEIGHTS and not f.name.endswith(".safetensors") and not (tmp / f.name).exists():
            shutil.copy2(f, tmp / f.name)
    _write_json(tmp / PROVENANCE, {"base": str(base), "run": str(run_dir.resolve()), "adapter": ADAPTER,
                                   "dataset_hash": run.get("dataset_hash"), "lora": run.get("lora"),
                                   "steps": run.get("steps"), "dtype": dtype})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    if out.parent.resolve() == run_dir.resolve():
        run["merged"] = out.name
        _write_json(run_dir / RUN_FILE, run)
    log.info("train_merged", run=str(run_dir), out=str(out), dtype=dtype, seconds=round(time.monotonic() - t0, 1))
    return out
