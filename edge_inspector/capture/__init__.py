"""capture: turn triggers into frames (one frame per trigger, also when the grab fails)."""

from edge_inspector.capture.base import BufferStrategy, PartFactory, Source, Trigger

__all__ = ["BufferStrategy", "PartFactory", "Source", "Trigger", "build_source"]


def build_source(cfg, triggers=None) -> Source:
    """The source for a ``capture`` config (imports device libraries only when used). ``triggers``
    is the daemon's trigger bus that software-triggered cameras wait on."""
    kind = cfg.kind
    if kind in ("basler", "opencv"):
        from importlib import import_module

        return import_module(f"edge_inspector.capture.{kind}").build(cfg, triggers=triggers)
    if kind == "folder":
        from edge_inspector.capture.folder import FolderSource

        return FolderSource(cfg)
    if kind == "demo":
        from edge_inspector.capture.demo import DemoSource

        return DemoSource(cfg)
    raise ValueError(f"unknown capture kind {kind!r}")
