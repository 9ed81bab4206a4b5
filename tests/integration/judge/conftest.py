"""Tiny Qwen2.5-VL (full precision and AWQ), Qwen3-VL and SAM checkpoints, built once per test session
into a temporary directory by tools/make_tiny_models.py (offline, about 30 s on 2 cores).

``EDGE_INSPECTOR_TINY_MODELS=DIR`` reuses a directory that ``make_tiny_models.py --out DIR`` wrote
(quicker while working on one test; the build is deterministic)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))

pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("gptqmodel")
    from make_tiny_models import build_all

    if reuse := os.environ.get("EDGE_INSPECTOR_TINY_MODELS"):
        names = ("qwen2_5_vl", "qwen2_5_vl-awq", "qwen3_vl", "sam")
        if all((Path(reuse) / n / "config.json").is_file() for n in names):
            return {n: Path(reuse) / n for n in names}

    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def pcb_recipe() -> Path:
    return REPO / "configs/recipes/pcb.yaml"
