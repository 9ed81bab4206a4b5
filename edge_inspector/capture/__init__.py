"""capture: turn triggers into frames (one frame per trigger, also when the grab fails)."""

from edge_inspector.capture.base import BufferStrategy, PartFactory, Source, Trigger

__all__ = ["BufferStrategy", "PartFactory", "Source", "Trigger", "build_source"]


def build_source(cfg) -> Source:
    """The source for a ``capture`` config (imports device libraries only when used)."""
    kind = cfg.kind
    if kind == "folder":
        from edge_inspector.capture.folder import FolderSource

        return FolderSource(cfg)
    if kind == "demo":
        from edge_inspector.capture.demo import DemoSource

        return DemoSource(cfg)
    raise ValueError(f"unknown capture kind {kind!r}")
