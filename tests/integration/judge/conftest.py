"""Tiny Qwen2.5-VL (full precision and AWQ), Qwen3-VL and SAM checkpoints, built once per test session
into a temporary directory by tools/make_tiny_models.py (offline, about 30 s on 2 cores)."""

from __future__ import annotations

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

    return build_all(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def pcb_recipe() -> Path:
    return REPO / "configs/recipes/pcb.yaml"
