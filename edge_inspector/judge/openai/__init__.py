"""The remote judge (``judge.kind: openai``): a VLM served for several stations over an
OpenAI-compatible API (vLLM in production; llama.cpp's llama-server in the tests).

Importing this package imports no HTTP client: ``build`` does when it is called.
"""

from edge_inspector.judge.openai.config import OpenAIJudgeConfig


def build(config: OpenAIJudgeConfig, **kwargs):  # noqa: ANN201 - lazy import
    """The :class:`~edge_inspector.judge.openai.judge.OpenAIJudge` for ``config``."""
    from edge_inspector.judge.openai.judge import build as _build

    return _build(config, **kwargs)


__all__ = ["OpenAIJudgeConfig", "build"]
