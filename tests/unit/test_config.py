from pathlib import Path

import pytest

from edge_inspector.config import load_config
from edge_inspector.config_base import reveal_secret
from edge_inspector.errors import ConfigError


def test_defaults_are_valid():
    cfg = load_config()
    assert cfg.capture.kind == "demo"
    assert cfg.policy.failsafe.timeout == "REJECT"


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "c.yaml").write_text("regions:\n  reference: ref.png\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.regions.reference == tmp_path / "ref.png"


def test_overrides_set_nested_values_with_yaml_types(tmp_path):
    cfg = load_config(None, ["policy.deadline_ms=350", "capture.kind=folder", f"capture.path={tmp_path}",
                             "images.keep=false"])
    assert cfg.policy.deadline_ms == 350.0
    assert cfg.capture.kind == "folder" and cfg.capture.path == tmp_path
    assert cfg.images.keep is False


@pytest.mark.parametrize("text, needle", [
    ("policy:\n  deadline_ms: -5\n", "policy.deadline_ms: Input should be greater than 0"),
    ("policy:\n  deadlne_ms: 5\n", "policy.deadlne_ms: unknown key"),
    ("capture:\n  kind: folder\n", "capture.path: Field required"),
    ("capture:\n  kind: folder\n  path: /x\n  interval_ms: fast\n", "capture.interval_ms: Input should be a valid number"),
    ("capture:\n  kind: webcam\n", "capture: Input tag 'webcam' found using 'kind' does not match"),
    ("policy: [1, 2\n", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("policy:\n  min_confidence: 0.3\n", "policy: min_confidence must be 0 (off) or above 0.5"),
])
def test_bad_config_names_the_key_and_the_problem(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert needle in str(err.value)
    assert err.value.exit_code == 2


def test_override_through_a_scalar_is_an_error(tmp_path):
    (tmp_path / "c.yaml").write_text("policy:\n  deadline_ms: 100\n")
    with pytest.raises(ConfigError, match="policy.deadline_ms is not a section"):
        load_config(tmp_path / "c.yaml", ["policy.deadline_ms.x=1"])


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")


def test_fingerprint_changes_with_the_config():
    assert load_config().fingerprint() != load_config(None, ["policy.deadline_ms=10"]).fingerprint()
    assert load_config().fingerprint() == load_config().fingerprint()


def test_secret_refs_come_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EI_TEST_SECRET", "s3cret")
    assert reveal_secret("env:EI_TEST_SECRET") == "s3cret"
    f = tmp_path / "pw"
    f.write_text("filepw\n")
    assert reveal_secret(f"file:{f}") == "filepw"
    with pytest.raises(ValueError, match="EI_NOT_SET is not set"):
        reveal_secret("env:EI_NOT_SET")


def test_schema_documents_every_field():
    from edge_inspector.config import Config, json_schema

    schema = json_schema()
    assert "policy" in schema["properties"]
    undocumented = []

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            if not field.description:
                undocumented.append(prefix + name)
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) or (ann,):
                if isinstance(sub, type) and hasattr(sub, "model_fields"):
                    walk(sub, f"{prefix}{name}.")

    walk(Config, "")
    assert undocumented == []


def _recipe(tmp_path, regions_block: str) -> Path:
    (tmp_path / "good").mkdir(exist_ok=True)
    recipe = tmp_path / "castings.yaml"
    recipe.write_text("product: a casting\ndefects:\n  - name: pore\n    description: a round cavity\n"
                      + regions_block)
    return recipe


def _station(tmp_path, recipe) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(f"judge:\n  kind: vlm\n  model_dir: {tmp_path}\n  recipe: {recipe}\n"
                    "regions:\n  kind: variation\n  boxes:\n    threshold: 1.5\n")
    return path


def test_the_recipe_chooses_the_regions_model(tmp_path):
    recipe = _recipe(tmp_path, "regions:\n  kind: texture\n  good_images: good\n")
    cfg = load_config(_station(tmp_path, recipe))
    assert cfg.regions.kind == "texture"  # over the station file's variation section
    assert cfg.regions.good_images == tmp_path / "good"  # relative to the recipe


def test_set_overrides_win_over_the_recipes_regions_block(tmp_path):
    recipe = _recipe(tmp_path, "regions:\n  kind: texture\n  good_images: good\n  boxes:\n    threshold: 1.2\n")
    cfg = load_config(_station(tmp_path, recipe), ["regions.boxes.threshold=2.5"])
    assert cfg.regions.kind == "texture" and cfg.regions.boxes.threshold == 2.5  # not dropped
    assert cfg.regions.good_images == tmp_path / "good"  # the rest of the recipe's block stays
    other = load_config(_station(tmp_path, recipe), ["regions.kind=variation"])
    assert other.regions.kind == "variation" and other.regions.boxes.threshold == 1.5  # the station's
    with pytest.raises(ConfigError, match=r"regions.boxes.threshold: Input should be greater than 0"):
        load_config(_station(tmp_path, recipe), ["regions.boxes.threshold=-1"])


def test_a_bad_regions_block_in_the_recipe_names_the_recipe_and_key(tmp_path):
    recipe = _recipe(tmp_path, "regions:\n  kind: texture\n  sensitivty: 2\n")
    with pytest.raises(ConfigError, match=r"recipe .*castings.yaml: invalid configuration\n  regions.sensitivty: unknown key"):
        load_config(None, ["judge.kind=vlm", f"judge.model_dir={tmp_path}", f"judge.recipe={recipe}"])


def test_a_recipe_without_regions_keeps_the_station_model(tmp_path):
    recipe = _recipe(tmp_path, "")
    cfg = load_config(None, ["judge.kind=vlm", f"judge.model_dir={tmp_path}", f"judge.recipe={recipe}"])
    assert cfg.regions.kind == "variation"
