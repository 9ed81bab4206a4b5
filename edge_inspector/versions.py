"""What a decision is stamped with: the station, the model (its hash and, for weights from the model
registry, its version), the config and the recipe.

Made once when the stages are built (``stages.build_stages``), from what was loaded, and swapped in
with them; the store's row, the MQTT result and the retained state all read the same object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Versions:
    station: str
    model: str
    config: str
    recipe: str | None = None
    recipe_version: str | None = None
    model_version: str | None = None  # the registry version of the judge's weights (learn/models.py)


def recipe_versions(judge_cfg: Any) -> tuple[str | None, str | None]:
    """The recipe's name and a hash of its content, when the judge has a recipe file."""
    path = getattr(judge_cfg, "recipe", None)  # a judge config field, not a service: only the VLM has one
    if path is None:
        return None, None
    path = Path(path)
    try:
        return path.stem, hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return path.stem, None


def versions_of(cfg: Any, model_hash: str) -> Versions:
    """The versions of stages built from ``cfg`` (``edge_inspector.config.Config``)."""
    from edge_inspector.learn.models import version_of_weights

    recipe, recipe_version = recipe_versions(cfg.judge)
    model_version = version_of_weights(getattr(cfg.judge, "model_dir", None))  # only the VLM has one
    return Versions(cfg.station.name, model_hash, cfg.fingerprint(), recipe, recipe_version, model_version)
