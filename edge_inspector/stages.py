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
    from edge_inspector.pipeline import Inspector


@dataclass(frozen=True, slots=True)
class Stages:
    """What one config builds; swapped in and out as a whole."""

    cfg: Config
    inspector: Inspector
    built: Versions  # as built; ``versions`` follows an in-place recipe edit the judge reloaded

    @property
    def versions(self) -> Versions:
        live = self.inspector.judge.judge.recipe_version
        if live is None or live == self.built.recipe_version:
            return self.built
        return replace(self.built, recipe_version=live)

    def close(self) -> None:
        self.inspector.close()


def build_stages(cfg: Config) -> Stages:
    """The stages for ``cfg``. Raises (StartupError, ConfigError, ...) with nothing left open."""
    from edge_inspector.judge import build_judge
    from edge_inspector.pipeline import Inspector
    from edge_inspector.policy import Policy
    from edge_inspector.regions import build_regions

    with logs.stdout_to_log("build"), logs.native_stdout_to_log("build"):
        regions = build_regions(cfg.regions)
        judge = build_judge(cfg.judge, regions.threshold)
        if cfg.pipeline.test_judge_faults is not None:  # a test facility: tools/soak.py
            from edge_inspector.judge.faults import FaultInjectingJudge

            judge = FaultInjectingJudge(judge, cfg.pipeline.test_judge_faults)
    logs.adopt_library_loggers()
    try:
        inspector = Inspector(regions, judge, Policy(cfg.policy), cfg.pipeline.judge_grace_ms / 1000)
    except BaseException:
        judge.close()
        raise
    return Stages(cfg, inspector, versions_of(cfg, inspector.model_hash))
