"""Fixtures for the remote judge's unit tests: a small recipe in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

RECIPE = """\
product: test board
defects:
  - name: short
    description: copper joins two traces
  - name: pin_hole
    description: a small hole in copper
references:
  - ref.png
"""


@pytest.fixture
def recipe_path(tmp_path: Path) -> Path:
    cv2.imwrite(str(tmp_path / "ref.png"), np.full((64, 64), 200, np.uint8))
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path
