"""The regions interface: find the suspicious regions of a frame."""

from __future__ import annotations

from abc import ABC, abstractmethod

from edge_inspector.envelope import Frame, Regions


class RegionFinder(ABC):
    """Scores a readable frame against the product's known-good appearance.

    ``find`` returns :class:`Regions` whose ``score`` is at least ``threshold`` exactly when it holds
    at least one box. It raises on a frame it cannot process (the policy makes that a NO-READ).
    When ``frame.reference`` is set (a one-shot manifest run), that reference is used for the frame.
    """

    fingerprint: str = ""
    threshold: float = 1.0

    @abstractmethod
    def find(self, frame: Frame) -> Regions: ...
