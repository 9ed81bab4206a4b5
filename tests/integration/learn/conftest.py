"""The tiny random Qwen2.5-VL checkpoint (tools/make_tiny_models.py, offline) and a small dataset in the
exporter's layout, built once per session. ``EDGE_INSPECTOR_TINY_MODELS=DIR`` reuses
``DIR/qwen2_5_vl`` written by ``make_tiny_models.py --out DIR``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytest.importorskip("transformers")
pytest.importorskip("peft")


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    if (reuse := os.environ.get("EDGE_INSPECTOR_TINY_MODELS")) and (Path(reuse) / "qwen2_5_vl/config.json").is_file():
        return Path(reuse) / "qwen2_5_vl"
    from make_tiny_models import build_tokenizer, qwen2_5_vl_config, save_vlm

    tok = build_tokenizer()
    return save_vlm(qwen2_5_vl_config(tok), tok, 14, tmp_path_factory.mktemp("tiny") / "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory) -> Path:
    if (reuse := os.environ.get("EDGE_INSPECTOR_TINY_MODELS")) and (Path(reuse) / "qwen3_vl/config.json").is_file():
        return Path(reuse) / "qwen3_vl"
    from make_tiny_models import build_tokenizer, qwen3_vl_config, save_vlm

    tok = build_tokenizer()
    return save_vlm(qwen3_vl_config(tok), tok, 16, tmp_path_factory.mktemp("tiny3") / "qwen3_vl")


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    from dataset_fixture import write_dataset

    return write_dataset(tmp_path_factory.mktemp("dataset"), n_train=4, n_val=2)


@pytest.fixture(scope="session")
def trained(tiny_qwen, dataset_dir, tmp_path_factory):
    """A finished 16-step run (whole-set batches) on the tiny model."""
    from edge_inspector.learn.train import LoraSettings, TrainSettings, train

    run_dir = tmp_path_factory.mktemp("runs") / "run"
    settings = TrainSettings(steps=16, lr=3e-3, batch=4, save_every=8, lora=LoraSettings(rank=8))
    return train(dataset_dir, tiny_qwen, run_dir, settings, device="cpu", progress=False)
