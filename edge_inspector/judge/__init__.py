"""judge: from a frame and its regions to a verdict."""

from edge_inspector.judge.base import Judge

__all__ = ["Judge", "build_judge"]


def build_judge(cfg, regions_threshold: float, thresholds: dict[str, float] | None = None) -> Judge:
    """The judge for ``cfg``. ``thresholds``: each camera's regions threshold, for a judge shared by
    the cameras of a multi-camera station (the anomaly judge scales each part by its camera's)."""
    if cfg.kind == "anomaly":
        from edge_inspector.judge.anomaly import AnomalyJudge

        return AnomalyJudge(cfg, regions_threshold, thresholds)
    if cfg.kind == "vlm":
        from edge_inspector.judge.vlm import build

        return build(cfg)
    if cfg.kind == "openai":
        from edge_inspector.judge.openai import build as build_openai

        return build_openai(cfg)
    raise ValueError(f"unknown judge kind {cfg.kind!r}")
