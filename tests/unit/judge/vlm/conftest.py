"""Fixtures for the VLM judge's unit tests: a small recipe in a temporary folder (no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

RECIPE = """\
product: test board
description: a copper pattern on a dark substrate
defects:
  - name: short
    description: copper joins two traces
  - name: pin_hole
    description: a small hole in copper
rules:
  - shifts are not defects
references:
  - ref.png
"""


@pytest.fixture
def recipe_path(tmp_path: Path) -> Path:
    img = np.zeros((64, 64), np.uint8)
    img[20:40, :] = 200
    cv2.imwrite(str(tmp_path / "ref.png"), img)
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path
