"""The product recipe: what the part is, its defect taxonomy, domain rules, known-good references and
the judge's calibration. A YAML file under ``configs/recipes/``; reference paths are relative to it.

``calibration`` is written by ``tools/calibrate.py`` (:func:`write_calibration` replaces that block
and leaves the rest of the file, comments included, as the quality engineer wrote it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from edge_inspector.config_base import ConfigModel, ConfigPath
from edge_inspector.errors import ConfigError

_NAME = r"^[a-z][a-z0-9_]*$"


class DefectType(ConfigModel):
    name: str = Field(..., pattern=_NAME, description="Identifier the model answers with (snake_case).")
    description: str = Field(..., min_length=3, description="What the defect looks like, for the model.")


class Calibration(ConfigModel):
    """Maps the judge's raw signals to a calibrated P(defective): sigmoid(bias + w_logit * logit(p_logit)
    + w_votes * logit(vote share)). Fitted by tools/calibrate.py on labelled recordings."""

    w_logit: float = Field(..., description="Weight of logit(P(defective) read from the decision token).")
    w_votes: float = Field(..., description="Weight of logit(smoothed share of defective votes).")
    bias: float = Field(..., description="Intercept.")
    votes: int = Field(..., ge=0, description="The votes per part the fit was made with.")
    cascade_pass_below: float | None = Field(None, description=(
        "Anomaly score under which the cascade passes a part without the VLM (below every defective "
        "part's score in the recordings, with a margin); None: no cascade."))
    cascade_p_defective: float | None = Field(None, ge=0.0, le=1.0, description=(
        "Measured P(defective) of the parts under that score (smoothed)."))
    model: str = Field("", description="Fingerprint of the model the fit was made with.")
    n_parts: int = Field(0, ge=0, description="Labelled parts the fit used.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Brier score, accuracy, ... of the fit.")
    fitted_on: str = Field("", description="The manifest the fit was made on.")


class Recipe(ConfigModel):
    product: str = Field(..., min_length=1, description="What the part is, in a few words.")
    description: str = Field("", description="What a good part looks like: layout, materials, finish.")
    defects: list[DefectType] = Field(..., min_length=1, description="The defect taxonomy.")
    rules: list[str] = Field(default_factory=list, description="Domain rules for the judge, one per item.")
    references: list[ConfigPath] = Field(default_factory=list, description=(
        "Known-good reference images (one-shot), relative to the recipe file."))
    regions: dict[str, Any] | None = Field(None, description=(
        "The product's regions model, with the keys of the station config's regions section (kind: "
        "variation or texture, reference, good_images, ...; paths relative to the recipe). When set, it "
        "replaces the station's regions section, so the recipe chooses the model per product."))
    calibration: Calibration | None = Field(None, description="Written by tools/calibrate.py.")

    @field_validator("defects")
    @classmethod
    def _unique(cls, defects: list[DefectType]) -> list[DefectType]:
        names = [d.name for d in defects]
        if len(set(names)) != len(names):
            raise ValueError(f"defect names must be unique: {names}")
        return defects

    @property
    def defect_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.defects)

    def content_hash(self) -> str:
        """Changes when anything the prompt is built from changes (not the calibration)."""
        h = hashlib.sha256(self.model_dump_json(exclude={"calibration", "references"}).encode())
        for ref in self.references:
            h.update(str(ref).encode())
            try:
                h.update(ref.read_bytes())
            except OSError:
                h.update(b"<missing>")
        return h.hexdigest()[:16]


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe. Raises ConfigError naming the file, the key and what is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"recipe {path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping at the top level")
    try:
        recipe = Recipe.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"recipe {path}: {errs}") from exc
    missing = [str(p) for p in recipe.references if not p.is_file()]
    if missing:
        raise ConfigError(f"recipe {path}: reference images not found: {', '.join(missing)}")
    return recipe


_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
_MARK = "# written by tools/calibrate.py"


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """Replace the recipe's top-level ``calibration:`` block (or append one); keep everything else."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    kept, skipping = [], False
    for line in lines:
        if line == _MARK:
            continue
        if line.startswith("calibration:"):
            skipping = True
            continue
        if skipping and (_TOP_KEY.match(line)):
            skipping = False
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    block = yaml.safe_dump({"calibration": calibration.model_dump(mode="json")}, sort_keys=False)
    text = "\n".join(kept) + f"\n\n{_MARK}\n" + block
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    load_recipe(path)  # the file we wrote must read back
