"""Training runs as `edge-inspector train` leaves them (run.json, adapter/, merged/, awq/,
parity.json), with checkpoints that pass the loader's checks (``inspect_checkpoint``: config,
tokenizer, processor, a safetensors header) but are never loaded: for the registry's tests."""

from __future__ import annotations

import json
import struct


def checkpoint(path, awq=False):
    """A checkpoint directory that passes inspect_checkpoint (one tiny tensor)."""
    path.mkdir(parents=True)
    cfg = {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"]}
    if awq:
        cfg["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "tokenizer.json").write_text("{}")
    (path / "preprocessor_config.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    return path


def make_run(root, name="run", awq=False, finished=True, parity=None, dataset_hash="d1"):
    run = root / name
    checkpoint(run / "merged")
    if awq:
        checkpoint(run / "awq", awq=True)
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (run / "run.json").write_text(json.dumps({
        "base": "/models/qwen-base", "dataset": "/data/ds", "dataset_hash": dataset_hash,
        "lora": {"r": 8, "alpha": 16}, "steps": 40, "loss": [2.0, 1.2, 0.7], "finished": finished}))
    if parity is not None:
        (run / "parity.json").write_text(json.dumps(parity))
    return run
