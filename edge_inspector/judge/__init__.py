"""judge: from a frame and its regions to a verdict."""

from edge_inspector.judge.base import Judge

__all__ = ["Judge", "build_judge"]


def build_judge(cfg, regions_threshold: float, thresholds: dict[str, float] | None = None,
                recipes: dict | None = None) -> Judge:
    """The judge for ``cfg``. For a judge shared by the cameras of a multi-camera station:
    ``thresholds``, each camera's regions threshold (the anomaly judge scales each part by its
    camera's), and ``recipes``, each camera's recipe file (the VLM judges prompt with it)."""
    extra = {"camera_recipes": recipes} if recipes else {}
    if cfg.kind == "anomaly":
        from edge_inspector.judge.anomaly import AnomalyJudge

        return AnomalyJudge(cfg, regions_threshold, thresholds)
    if cfg.kind == "vlm":
        from edge_inspector.judge.vlm import build

        return build(cfg, **extra)
    if cfg.kind == "openai":
        from edge_inspector.judge.openai import build as build_openai

        return build_openai(cfg, **extra)
    raise ValueError(f"unknown judge kind {cfg.kind!r}")
