"""The judge interface: from a frame and its regions to a verdict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

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

    def judge_many(self, items: Sequence[tuple[Frame, Regions]]) -> list[Verdict | BaseException]:
        """One call for several waiting parts (a multi-camera station batches the parts that wait
        together), each by its own frame's deadline: a verdict or the exception for each part, in
        order, so one part's failure is that part's alone. A judge whose model takes a batch
        overrides this; the fallback is one :meth:`judge` call per part."""
        out: list[Verdict | BaseException] = []
        for frame, regions in items:
            try:
                out.append(self.judge(frame, regions, frame.deadline_mono))
            except BaseException as exc:  # noqa: BLE001 - this part's failure, handed back
                out.append(exc)
        return out

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""
