"""The VLM judge (``judge.kind: vlm``): Qwen2.5-VL / Qwen3-VL through transformers, AWQ 4-bit,
self-consistency votes sharing one prefill, a prefix key/value cache, calibrated P(defective).

Importing this package imports no torch: ``build`` loads transformers when it is called.
"""

from edge_inspector.judge.vlm.config import CascadeConfig, VlmJudgeConfig


def build(config: VlmJudgeConfig, **kwargs):  # noqa: ANN201 - lazy import keeps torch out of the CLI
    """Load the model and recipe once and return a :class:`~edge_inspector.judge.vlm.judge.VlmJudge`."""
    from edge_inspector.judge.vlm.judge import build as _build

    return _build(config, **kwargs)


__all__ = ["CascadeConfig", "VlmJudgeConfig", "build"]
