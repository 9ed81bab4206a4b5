"""The VLM judge: cascade, prompt, one engine call, votes, calibrated P(defective), verdict."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

from edge_inspector.envelope import Frame, Regions, Verdict
from edge_inspector.errors import ConfigError, ImageError, JudgeError, StartupError
from edge_inspector.imageio import load_image
from edge_inspector.judge.base import Judge
from edge_inspector.judge.vlm.calibration import calibrated_probability, raw_probability
from edge_inspector.judge.vlm.config import VlmJudgeConfig
from edge_inspector.judge.vlm.generation import DeadlineGuard, Generation
from edge_inspector.judge.vlm.parse import parse_answer
from edge_inspector.judge.vlm.prompt import Prompt, build_prompt, prompt_for
from edge_inspector.judge.vlm.vote import tally
from edge_inspector.recipe import Recipe, load_recipe

log = structlog.get_logger(__name__)


class EngineLike(Protocol):
    def run(self, prompt: Prompt, votes: int, guard: DeadlineGuard) -> Generation: ...


class RecipeSource:
    """The recipe and its reference images, reloaded when the file changes (checked with one stat per
    part). A recipe that no longer loads keeps the last good one, with one warning per broken edit
    (not one per part). ``version``: the content hash of the recipe in force (what rows are stamped
    with; ``versions.recipe_versions`` hashes the same way)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._failed: tuple[int, int] | None = None  # the stamp of the broken edit already logged
        self.version: str | None = None
        try:
            self.recipe, self.references = self._load()
        except OSError as exc:
            raise StartupError(f"recipe {self.path}: cannot read it ({exc.strerror or exc}); set "
                               "judge.recipe to a recipe file") from None

    def _load(self) -> tuple[Recipe, tuple[np.ndarray, ...]]:
        st = self.path.stat()
        content = self.path.read_bytes()
        recipe = load_recipe(self.path)
        try:
            refs = tuple(load_image(p) for p in recipe.references)
        except ImageError as exc:
            raise ConfigError(f"recipe {self.path}: {exc}") from exc
        self._stamp = (st.st_mtime_ns, st.st_size)
        self.version = hashlib.sha256(content).hexdigest()[:12]
        return recipe, refs

    def refresh(self) -> bool:
        stamp = None
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp in (self._stamp, self._failed):
                return False
            self.recipe, self.references = self._load()
        except (OSError, ConfigError) as exc:
            if stamp is None or stamp != self._failed:
                log.warning("recipe_reload_failed", path=str(self.path), error=str(exc),
                            keeps=self.version)
            self._failed = stamp if stamp is not None else self._failed
            return False
        self._failed = None
        log.info("recipe_reloaded", path=str(self.path), product=self.recipe.product, version=self.version)
        return True


class VlmJudge(Judge):
    """``recipes``: the recipe in force; ``camera_recipes``: a multi-camera station's cameras whose
    product has a recipe of its own (one judge, one model, a recipe per camera's product)."""

    def __init__(self, config: VlmJudgeConfig, engine: EngineLike, recipes: RecipeSource, fingerprint: str,
                 clock: Callable[[], float] = time.monotonic,
                 camera_recipes: dict[str, RecipeSource] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.recipes = recipes
        self.camera_recipes = dict(camera_recipes or {})
        self.fingerprint = fingerprint
        self.clock = clock
        for source in {id(r): r for r in (recipes, *self.camera_recipes.values())}.values():
            cal = source.recipe.calibration
            if cal is not None and (cal.votes != config.votes or (cal.model and cal.model != fingerprint)):
                log.warning("calibration_mismatch", recipe=str(source.path), calibrated_votes=cal.votes,
                            votes=config.votes, calibrated_model=cal.model, model=fingerprint)

    def recipes_for(self, camera: str | None) -> RecipeSource:
        return self.camera_recipes.get(camera, self.recipes) if camera is not None else self.recipes

    @property
    def recipe_version(self) -> str | None:
        return self.recipes.version

    def recipe_version_for(self, camera: str) -> str | None:
        return self.recipes_for(camera).version

    def cascade_threshold(self, camera: str | None = None) -> float | None:
        c = self.config.cascade
        if not c.enabled:
            return None
        cal = self.recipes_for(camera).recipe.calibration
        return c.pass_below if c.pass_below is not None else (cal.cascade_pass_below if cal else None)

    def judge(self, frame: Frame, regions: Regions, deadline_mono: float) -> Verdict:
        recipes = self.recipes_for(frame.camera)
        recipes.refresh()
        return self._judge(frame, regions, deadline_mono, recipes)

    def _judge(self, frame: Frame, regions: Regions, deadline_mono: float, recipes: RecipeSource) -> Verdict:
        """The verdict under ``recipes`` as they are (refreshed by the caller)."""
        threshold = self.cascade_threshold(frame.camera)
        if threshold is not None and regions.score < threshold:
            return self._cascade_pass(regions, threshold, recipes)
        if frame.image is None:
            raise JudgeError("the frame has no image")
        guard = DeadlineGuard(deadline_mono, self.config.deadline_margin_ms / 1e3, self.clock)
        guard.check("the VLM judge")
        recipe = recipes.recipe
        prompt = prompt_for(recipe, frame.image, regions.crops, regions.boxes, recipes.references,
                            frame.reference, self.config.max_regions)
        try:
            gen = self.engine.run(prompt, self.config.votes, guard)
        except JudgeError:
            raise  # JudgeTimeout included
        except Exception as exc:  # noqa: BLE001 - a model failure on one part is a judge error
            raise JudgeError(f"VLM inference failed: {type(exc).__name__}: {exc}") from exc
        return self._verdict(gen, prompt, recipe)

    def _cascade_pass(self, regions: Regions, threshold: float, recipes: RecipeSource | None = None) -> Verdict:
        cal = (recipes or self.recipes).recipe.calibration
        p = cal.cascade_p_defective if cal and cal.cascade_p_defective is not None \
            else self.config.cascade.p_defective
        return Verdict(defective=False, p_defective=p, confidence=1.0 - p, decided_by="regions",
                       model=regions.model, details={"score": regions.score, "cascade_pass_below": threshold})

    def _verdict(self, gen: Generation, prompt: Prompt, recipe: Recipe) -> Verdict:
        names = recipe.defect_names
        votes = tuple(parse_answer(t, names, prompt.n_regions) for t in gen.texts)
        t = tally(votes, names) if votes else None
        if t is not None:
            need = max(1, math.ceil(self.config.min_valid_fraction * t.n))
            if t.n_valid < need:
                raise JudgeError(f"only {t.n_valid} of {t.n} answers could be parsed (need {need}); "
                                 f"first answer: {gen.texts[0][:80]!r}")
        p = calibrated_probability(gen.p_logit, t, recipe.calibration)
        defective = p >= 0.5
        details = {
            "p_logit": gen.p_logit,
            "decision_mass": gen.decision_mass,
            "vote_share": None if t is None or t.share is None else round(t.share, 4),
            "valid_votes": t.n_valid if t else 0,
            "invalid_votes": t.n_invalid if t else 0,
            "p_raw": round(raw_probability(gen.p_logit, t), 4),
            "calibrated": recipe.calibration is not None,
            "region": t.region if t and defective else None,
            "prefix_cache_hit": gen.prefix_hit,
            "constrained": self.config.constrained,  # the votes were masked to the answer form
            "prefill_tokens": gen.prefill_tokens,
            "generation_ms": round(gen.timings_ms.get("total_ms", 0.0), 3),
            "timings_ms": {k: round(v, 3) for k, v in gen.timings_ms.items()},
        }
        return Verdict(defective=defective, p_defective=p, confidence=max(p, 1.0 - p), decided_by="vlm",
                       model=self.fingerprint, defect_type=t.defect_type if t and defective else None,
                       votes=votes, details=details)

    def warm_up(self) -> None:
        """One inference on a grey frame: fills the prefix cache and the step-cost estimates, so the
        first real part pays neither."""
        grey = np.full((256, 256), 128, np.uint8)
        prompt = build_prompt(self.recipes.recipe, grey, (), (), self.recipes.references, None)
        self.engine.run(prompt, self.config.votes, DeadlineGuard(math.inf))


def camera_recipe_sources(default: RecipeSource, camera_recipes: dict[str, Path] | None
                          ) -> dict[str, RecipeSource]:
    """One RecipeSource per distinct recipe file of the cameras (the default's shared)."""
    by_path: dict[Path, RecipeSource] = {Path(default.path): default}
    out = {}
    for camera, path in (camera_recipes or {}).items():
        path = Path(path)
        if path not in by_path:
            by_path[path] = RecipeSource(path)
        out[camera] = by_path[path]
    return out


def build(config: VlmJudgeConfig, clock: Callable[[], float] = time.monotonic, warm_up: bool = True,
          camera_recipes: dict[str, Path] | None = None) -> VlmJudge:
    """Load the recipe and the model (once, at start-up) and return the judge. Raises StartupError
    (model) or ConfigError (recipe) with a message that names the file and what is wrong.
    ``camera_recipes``: each camera's recipe file, for a judge shared by a multi-camera station."""
    from edge_inspector.judge.vlm.engine import Engine, SamplingSettings
    from edge_inspector.judge.vlm.loading import load_model

    recipes = RecipeSource(config.recipe)
    by_camera = camera_recipe_sources(recipes, camera_recipes)
    loaded = load_model(config.model_dir, config.device, config.dtype, config.attn_implementation)
    engine = Engine(loaded, max_pixels={"frame": config.frame_max_pixels, "crop": config.crop_max_pixels,
                                        "reference": config.reference_max_pixels},
                    sampling=SamplingSettings(config.temperature, config.top_p, config.max_new_tokens, config.seed),
                    prefix_cache=config.prefix_cache, clock=clock, constrained=config.constrained)
    judge = VlmJudge(config, engine, recipes, loaded.info.fingerprint, clock, by_camera)
    if warm_up:
        try:
            judge.warm_up()
        except Exception as exc:  # noqa: BLE001
            raise StartupError(f"VLM model directory {config.model_dir}: the warm-up inference failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    log.info("vlm_judge_ready", model=judge.fingerprint, device=str(loaded.device), dtype=str(loaded.dtype),
             recipe=str(config.recipe), votes=config.votes)
    return judge
