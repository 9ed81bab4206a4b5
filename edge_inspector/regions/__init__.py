"""regions: the first stage. Scores a frame against known-good samples and boxes the anomalies."""

from edge_inspector.regions.base import RegionFinder

__all__ = ["RegionFinder", "build_regions"]


def build_regions(cfg) -> RegionFinder:
    """The configured regions model, followed by SAM refinement (when ``sam_dir`` is set) and zoom."""
    from edge_inspector.regions.refine import with_refinement

    if cfg.kind == "variation":
        from edge_inspector.regions.variation import VariationFinder

        return with_refinement(VariationFinder(cfg), cfg)
    if cfg.kind == "texture":
        from edge_inspector.regions.texture import TextureFinder

        return with_refinement(TextureFinder(cfg), cfg)
    raise ValueError(f"unknown regions kind {cfg.kind!r}")
