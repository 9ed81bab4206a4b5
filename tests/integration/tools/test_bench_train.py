"""tools/bench_train.py: runs at tiny shapes on a CPU, and builds the 3B shapes (on the meta device here;
the GPU run is in docs/learning.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.slow


def test_a_tiny_run_reports_steps_per_second_and_peak_memory(capsys):
    import bench_train

    rc = bench_train.main(["--size", "tiny", "--device", "cpu", "--steps", "2", "--warmup", "1",
                           "--image-sides", "112,56", "--text-tokens", "40", "--answer-tokens", "8", "--json"])
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and r["losses_finite"]
    assert r["image_tokens"] == [16, 4] and r["seq_len"] == 40 + 8 + 16 + 4 + 2 * 2
    assert r["steps_per_s"] > 0 and r["peak_memory_bytes"] > 0 and r["trainable_params"] < r["params"]


def test_the_3b_shapes_are_qwen2_5_vl_3b():
    import bench_train

    from edge_inspector.learn.train import LoraSettings, build_peft

    model, config = bench_train.build_model("3b", torch.device("meta"), torch.bfloat16)
    assert 3.7e9 < sum(p.numel() for p in model.parameters()) < 3.8e9  # Qwen2.5-VL-3B: 3.75 B
    assert config.text_config.num_hidden_layers == 36 and config.vision_config.depth == 32
    lora = build_peft(model, LoraSettings(rank=16))
    # r=16 on q,k,v,o,gate,up,down of 36 layers (hidden 2048, kv 256, mlp 11008)
    per_layer = 16 * ((2048 + 2048) * 2 + (2048 + 256) * 2 + (2048 + 11008) * 3)
    assert sum(p.numel() for p in lora.parameters() if p.requires_grad) == 36 * per_layer
