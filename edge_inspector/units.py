"""The station's capture units and the parts they put in its queue: a :class:`Unit` is one capture
thread's worth (a camera, or a view set of cameras that see one part per trigger) with its own part
factory and counters; a :class:`Part` is one triggered part and its views. ``station.py`` runs them,
``daemon.py`` builds them from the config."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.capture import PartFactory, Source
from edge_inspector.capture.triggers import TriggerBus
from edge_inspector.envelope import Frame, Outcome

if TYPE_CHECKING:
    from edge_inspector.capture.base import Trigger

__all__ = ["Counters", "HookedPartFactory", "Part", "Unit"]

log = structlog.get_logger(__name__)


@dataclass
class Counters:
    triggers: int = 0
    decisions: int = 0
    overflow: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})


class HookedPartFactory(PartFactory):
    """A PartFactory that tells ``hooks`` of each part as it is made, in the thread that triggered it
    and before the image exists (the PLC link arms the part then). A failing hook is logged."""

    def __init__(self, deadline_s: float, run_tag: str | None = None) -> None:
        super().__init__(deadline_s, run_tag)
        self.hooks: list = []
        self._outstanding: dict[str, Trigger] = {}  # made, not yet yielded as a frame

    def trigger(self, camera: str, t_mono: float | None = None):
        trig = super().trigger(camera, t_mono)
        with self._lock:
            self._outstanding[trig.part_id] = trig
        for hook in self.hooks:
            try:
                hook(trig)
            except Exception as exc:  # noqa: BLE001 - a hook must never lose the part
                log.error("trigger_hook_failed", part_id=trig.part_id,
                          error=f"{type(exc).__name__}: {exc}")
        return trig

    def settle(self, part_id: str) -> None:
        """The source yielded this part's frame."""
        with self._lock:
            self._outstanding.pop(part_id, None)

    def take_outstanding(self) -> list[Trigger]:
        """The parts triggered whose frame never came (the source raised): each still needs its
        decision."""
        with self._lock:
            out, self._outstanding = list(self._outstanding.values()), {}
        return out


class Unit:
    """One capture thread's worth: a camera, or a view set of cameras that see one part per trigger.
    Its own source, part factory (deadline, the PLC lane's arm hook), trigger bus and counters."""

    def __init__(self, name: str, source: Source, parts: HookedPartFactory, triggers: TriggerBus | None,
                 cameras: tuple[str, ...] | None = None, timer_hz: float | None = None,
                 view_set: bool = False) -> None:
        self.name = name
        self.source = source
        self.parts = parts
        self.triggers = triggers if triggers is not None else TriggerBus()
        self.cameras = cameras or (source.name,)
        self.timer_hz = timer_hz
        self.view_set = view_set
        self.triggered = 0
        self.decided = 0
        self.outcomes = {o.value: 0 for o in Outcome}
        self.failure: str | None = None  # why its source dropped
        self.thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "cameras": list(self.cameras), "view_set": self.view_set,
                "source": self.source.health(), "dropped": self.failure,
                "counters": {"triggers": self.triggered, "decisions": self.decided, **self.outcomes}}


@dataclass(slots=True)
class Part:
    """One triggered part in the queue: its unit and its views (one frame per camera)."""

    unit: Unit
    views: tuple[Frame, ...]

    @property
    def part_id(self) -> str:
        return self.views[0].part_id
