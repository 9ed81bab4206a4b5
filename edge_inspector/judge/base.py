"""The judge interface: from a frame and its regions to a verdict."""

from __future__ import annotations

from abc import ABC, abstractmethod

from edge_inspector.envelope import Frame, Regions, Verdict


class Judge(ABC):
    """Decides whether a part is defective.

    ``judge`` must return by ``deadline_mono`` (a ``time.monotonic()`` value) or raise
    :class:`edge_inspector.errors.JudgeTimeout`; any other failure raises
    :class:`edge_inspector.errors.JudgeError`. The daemon also guards the call with its own timeout,
    so a judge that hangs cannot stall the line.
    """

    fingerprint: str = ""

    @property
    def recipe_version(self) -> str | None:
        """The content hash of the recipe in force, for a judge that reloads one (None: no recipe)."""
        return None

    @abstractmethod
    def judge(self, frame: Frame, regions: Regions, deadline_mono: float) -> Verdict: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""
