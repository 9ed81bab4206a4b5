"""Image-only processors for Qwen-VL checkpoints.

The stock ``Qwen2_5_VLProcessor`` and ``Qwen3VLProcessor`` require a video processor, which needs
torchvision (absent on CPU boxes with this torch). The station never sends video, so these subclasses
take no video processor; registered with ``AutoProcessor`` for their config classes, one code path
loads tiny test checkpoints and real ones (and gptqmodel's calibration, which calls ``AutoProcessor``).
"""

from __future__ import annotations

_registered = False


def register_image_only_processors() -> None:
    """Register the image-only processors with ``AutoProcessor`` (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen3VLConfig
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    for config_cls, base in ((Qwen2_5_VLConfig, Qwen2_5_VLProcessor), (Qwen3VLConfig, Qwen3VLProcessor)):
        AutoProcessor.register(config_cls, _image_only(base), exist_ok=True)
    _registered = True


def _image_only(base: type) -> type:
    """``base`` with a constructor that takes no video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return type(f"ImageOnly{base.__name__}", (base,), {"__init__": __init__})
