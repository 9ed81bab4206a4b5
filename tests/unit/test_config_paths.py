"""Where a path in the config points: a config file's paths against that file, ``--set`` paths against
the current directory, the defaults (the default recipe) against the package, whatever the cwd."""

from pathlib import Path

from edge_inspector.config import load_config

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs/demo.yaml"


def test_the_default_recipe_is_the_packages_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["judge.kind=vlm", "judge.model_dir=/m"])
    assert cfg.judge.recipe == REPO / "configs/recipes/pcb.yaml" and cfg.judge.recipe.is_file()


def test_a_config_in_a_subfolder_does_not_move_the_default_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(Path("configs/demo.yaml"), ["judge.kind=vlm", "judge.model_dir=/m"])
    assert cfg.judge.recipe == REPO / "configs/recipes/pcb.yaml"  # never configs/configs/recipes/...
    monkeypatch.chdir(tmp_path)
    cfg = load_config(DEMO, ["judge.kind=vlm", "judge.model_dir=/m"])
    assert cfg.judge.recipe == REPO / "configs/recipes/pcb.yaml"
    assert cfg.regions.reference == REPO / "var/demo/product/reference.png"  # the file's own paths


def test_set_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(DEMO, ["judge.kind=vlm", "judge.model_dir=models/awq", "judge.recipe=r.yaml"])
    assert cfg.judge.model_dir == tmp_path / "models/awq" and cfg.judge.recipe == tmp_path / "r.yaml"
    assert cfg.judge.kind == "vlm" and cfg.station.name == "demo"


def test_paths_written_in_a_config_file_are_relative_to_that_file(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/s.yaml").write_text("judge: {kind: vlm, model_dir: m, recipe: ../r/p.yaml}\n")
    monkeypatch.chdir(REPO)
    cfg = load_config(tmp_path / "cfg/s.yaml")
    assert (cfg.judge.model_dir, cfg.judge.recipe) == (tmp_path / "cfg/m", tmp_path / "r/p.yaml")
