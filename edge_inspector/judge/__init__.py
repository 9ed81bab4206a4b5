"""judge: from a frame and its regions to a verdict."""

from edge_inspector.judge.base import Judge

__all__ = ["Judge", "build_judge"]


def build_judge(cfg, regions_threshold: float) -> Judge:
    if cfg.kind == "anomaly":
        from edge_inspector.judge.anomaly import AnomalyJudge

        return AnomalyJudge(cfg, regions_threshold)
    raise ValueError(f"unknown judge kind {cfg.kind!r}")
