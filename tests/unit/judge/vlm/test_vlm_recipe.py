"""The recipe file: the shipped PCB recipe, and clear errors for broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_inspector.errors import ConfigError
from edge_inspector.recipe import load_recipe

REPO = Path(__file__).resolve().parents[4]


def test_the_pcb_recipe():
    recipe = load_recipe(REPO / "configs/recipes/pcb.yaml")
    assert recipe.defect_names == ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")
    assert all(len(d.description) > 20 for d in recipe.defects)
    assert recipe.references and all(p.is_file() for p in recipe.references)
    assert recipe.references[0].parent == REPO / "configs/recipes/pcb"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace("name: short", "name: Short Circuit"), "defects.0.name"),
    (lambda s: s.replace("name: pin_hole", "name: short"), "unique"),
    (lambda s: s.replace("ref.png", "missing.png"), "reference images not found"),
    (lambda s: s + "colour: red\n", "colour"),
    (lambda s: s.replace("defects:", "defects: [\n"), "not valid YAML"),
])
def test_broken_recipes_name_what_is_wrong(recipe_path, edit, message):
    recipe_path.write_text(edit(recipe_path.read_text()))
    with pytest.raises(ConfigError, match=message) as err:
        load_recipe(recipe_path)
    assert str(recipe_path) in str(err.value)


def test_content_hash_follows_what_the_prompt_is_built_from(recipe_path):
    h = load_recipe(recipe_path).content_hash()
    recipe_path.write_text(recipe_path.read_text().replace("shifts are not defects", "shifts are fine"))
    assert load_recipe(recipe_path).content_hash() != h
