"""The one builder of the inspection stages from a config: regions -> judge -> policy.

The daemon (at start), the reload service (beside the running stages) and ``edge-inspector
inspect`` all call :func:`build_stages`, so a setting such as ``pipeline.judge_grace_ms`` means the
same everywhere. What the stages are stamped with (:class:`~edge_inspector.versions.Versions`: the
model, the config and the recipe's content hash) is taken here, from what was loaded, once; the
recipe version then follows the judge's in-place reload of an edited recipe.

Building may import and load large libraries (transformers, gptqmodel); whatever they print (from
Python or from C, on file descriptor 1) goes to the log, never to stdout, and their stdlib loggers
are routed through structlog afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edge_inspector import logs
from edge_inspector.versions import Versions, versions_of

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.pipeline import GuardedJudge, Inspector


@dataclass(frozen=True, slots=True)
class Stages:
    """What one config builds; swapped in and out as a whole."""

    cfg: Config
    inspector: Inspector
    built: Versions  # as built; ``versions`` follows an in-place recipe edit the judge reloaded

    @property
    def versions(self) -> Versions:
        judge = self.inspector.judge.judge
        per_camera = getattr(judge, "recipe_version_for", None)  # a judge shared by cameras
        live = per_camera(self.cfg.capture.name) if per_camera else judge.recipe_version
        if live is None or live == self.built.recipe_version:
            return self.built
        return replace(self.built, recipe_version=live)

    def close(self) -> None:
        self.inspector.close()


def build_stages(cfg: Config, judge: GuardedJudge | None = None) -> Stages:
    """The stages for ``cfg``. Raises (StartupError, ConfigError, ...) with nothing left open.
    ``judge``: a judge shared with other cameras (its owner closes it); None: build one from
    ``cfg.judge``, owned by these stages."""
    from edge_inspector.regions import build_regions

    with logs.stdout_to_log("build"), logs.native_stdout_to_log("build"):
        regions = build_regions(cfg.regions)
    return _stages(cfg, regions, judge)


def _judge(cfg: Config, *args):
    """The judge ``cfg.judge`` names, wrapped in the fault injector when ``pipeline.test_judge_faults``
    is set (a test facility: tools/soak.py)."""
    from edge_inspector.judge import build_judge

    judge = build_judge(cfg.judge, *args)
    if cfg.pipeline.test_judge_faults is not None:
        from edge_inspector.judge.faults import FaultInjectingJudge

        judge = FaultInjectingJudge(judge, cfg.pipeline.test_judge_faults)
    return judge


def _stages(cfg: Config, regions, judge: GuardedJudge | None) -> Stages:
    from edge_inspector.pipeline import Inspector
    from edge_inspector.policy import Policy

    with logs.stdout_to_log("build"), logs.native_stdout_to_log("build"):
        own = _judge(cfg, regions.threshold) if judge is None else None
    logs.adopt_library_loggers()
    try:
        inspector = Inspector(regions, own if judge is None else judge, Policy(cfg.policy),
                              cfg.pipeline.judge_grace_ms / 1000)
    except BaseException:
        if own is not None:
            own.close()
        raise
    return Stages(cfg, inspector, versions_of(cfg, inspector.model_hash))


@dataclass(frozen=True, slots=True)
class StationStages:
    """Every camera's stages and the one judge they share; swapped in and out as a whole.

    Without ``cameras:`` in the config, one camera (named after its source) whose stages own their
    judge: what :func:`build_stages` makes, as before. With ``cameras:``, each camera has its own
    regions model and policy (its deadline) and all of them one judge (one model in memory), which
    these stages own and close last."""

    cfg: Config
    cameras: dict[str, Stages]
    judge: GuardedJudge
    built: Versions

    @classmethod
    def of(cls, stages: Stages) -> StationStages:
        """A single camera's stages (they own their judge) as a station's."""
        return cls(stages.cfg, {stages.cfg.capture.name: stages}, stages.inspector.judge, stages.built)

    @property
    def inspector(self) -> Inspector:  # the first camera's: what a single-camera station has
        return next(iter(self.cameras.values())).inspector

    def _for(self, camera: str) -> Stages:
        if camera in self.cameras:
            return self.cameras[camera]
        if not self.cfg.multi_camera:  # one camera, whatever its source calls it
            return next(iter(self.cameras.values()))
        raise KeyError(f"no camera {camera!r} in this station ({', '.join(self.cameras)})")

    def inspector_for(self, camera: str) -> Inspector:
        return self._for(camera).inspector

    def config_for(self, camera: str) -> Config:
        return self._for(camera).cfg

    def versions_for(self, camera: str) -> Versions:
        """What a part of ``camera`` is stamped with: the station's model and config, the camera's
        recipe (a view set: its first camera's)."""
        if not self.cfg.multi_camera:
            return self.versions
        one = self.cameras.get(camera) or self.cameras.get(self._view_set_first.get(camera, ""))
        if one is None:
            return self.versions
        v = one.versions
        return replace(self.versions, recipe=v.recipe, recipe_version=v.recipe_version)

    @property
    def _view_set_first(self) -> dict[str, str]:
        return {c.view_set: c.name for c in reversed(self.cfg.cameras or []) if c.view_set}

    @property
    def versions(self) -> Versions:
        live = self.judge.judge.recipe_version
        if live is None or live == self.built.recipe_version:
            return self.built
        return replace(self.built, recipe_version=live)

    def close(self) -> None:
        try:
            for stages in self.cameras.values():
                stages.close()  # a single camera's closes its own judge
        finally:
            if self.cfg.multi_camera:
                self.judge.close()


def build_station_stages(cfg: Config) -> StationStages:
    """Every camera's stages for ``cfg`` (:meth:`Config.camera_configs`), one judge for all.
    Raises with nothing left open."""
    if not cfg.multi_camera:
        (name, one), = cfg.camera_configs().items()
        return StationStages.of(build_stages(one))
    from edge_inspector.pipeline import GuardedJudge
    from edge_inspector.regions import build_regions

    cams = cfg.camera_configs()
    with logs.stdout_to_log("build"), logs.native_stdout_to_log("build"):
        regions = {name: build_regions(c.regions) for name, c in cams.items()}
        # each camera's regions threshold: the anomaly judge's per-camera scale
        thresholds = {name: r.threshold for name, r in regions.items()}
        # each camera's recipe (its product), for a judge that prompts with one
        recipes = {name: c.judge.recipe for name, c in cams.items() if getattr(c.judge, "recipe", None)}
        judge = GuardedJudge(_judge(cfg, next(iter(thresholds.values())), thresholds, recipes),
                             cfg.pipeline.judge_grace_ms / 1000)
    logs.adopt_library_loggers()
    built: dict[str, Stages] = {}
    try:
        for name, c in cams.items():
            built[name] = _stages(c, regions[name], judge)
    except BaseException:
        for stages in built.values():
            stages.close()
        judge.close()
        raise
    model = "+".join(dict.fromkeys(s.inspector.regions.fingerprint for s in built.values()))
    return StationStages(cfg, built, judge, versions_of(cfg, f"{model}+{judge.judge.fingerprint}"))
