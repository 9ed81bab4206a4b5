"""An in-place recipe edit, picked up by the VLM judge between two parts, refreshes the recipe version
that rows and results are stamped with; a broken edit keeps the last good recipe, logged once."""

from __future__ import annotations

import hashlib
import math
import shutil

import cv2
import pytest
import structlog

from edge_inspector.capture.base import PartFactory
from edge_inspector.config import load_config
from edge_inspector.stages import build_stages
from edge_inspector.synth.pcb import BoardDesign, make_board
from edge_inspector.versions import recipe_versions

pytestmark = pytest.mark.slow


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_an_in_place_edit_refreshes_the_version_and_a_broken_one_is_logged_once(tmp_path, tiny_models,
                                                                                  pcb_recipe):
    shutil.copytree(pcb_recipe.parent, tmp_path / "recipes")
    recipe = tmp_path / "recipes/pcb.yaml"
    design = BoardDesign(seed=1)
    cv2.imwrite(str(tmp_path / "ref.png"), make_board(design, 0).image)
    board = make_board(design, 3, defects=["short"]).image
    cfg = load_config(None, ["judge.kind=vlm", f"judge.model_dir={tiny_models['qwen2_5_vl']}",
                             f"judge.recipe={recipe}", "judge.votes=1",
                             f"regions.reference={tmp_path / 'ref.png'}"])
    stages = build_stages(cfg)
    parts = PartFactory(math.inf)

    def inspect():
        return stages.inspector.inspect(parts.trigger("cam").frame(board))

    try:
        first = digest(recipe)
        assert stages.versions.recipe_version == first == recipe_versions(cfg.judge)[1]
        inspect()
        assert stages.versions.recipe_version == first
        edited = recipe.read_text().replace("rules:\n", "rules:\n  - Solder mask colour is no defect.\n")
        recipe.write_text(edited)
        assert inspect().verdict.decided_by == "vlm"
        second = digest(recipe)
        assert second != first and stages.versions.recipe_version == second  # no rebuild, no reload
        good = recipe.read_text()
        recipe.write_text(good.replace("defects:", "defects: [oops"))  # no longer YAML
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                assert inspect().verdict.decided_by == "vlm"  # the last good recipe judges on
        failed = [e for e in logs if e["event"] == "recipe_reload_failed"]
        assert len(failed) == 1 and failed[0]["keeps"] == second  # once, not on every part
        assert stages.versions.recipe_version == second
        recipe.write_text(good.replace("rules:\n", "rules:\n  - Dust is not a defect.\n"))
        inspect()
        assert stages.versions.recipe_version == digest(recipe)
    finally:
        stages.close()
