"""regions: the first stage. Scores a frame against known-good samples and boxes the anomalies."""

from edge_inspector.regions.base import RegionFinder

__all__ = ["RegionFinder", "build_regions"]


def build_regions(cfg) -> RegionFinder:
    if cfg.kind == "variation":
        from edge_inspector.regions.variation import VariationFinder

        return VariationFinder(cfg)
    raise ValueError(f"unknown regions kind {cfg.kind!r}")
