"""The capture interface: a source turns triggers into frames, exactly one frame per trigger."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from edge_inspector.envelope import Frame, Reason


class BufferStrategy(StrEnum):
    """What the daemon does when the inspection queue is full."""

    WAIT = "wait"  # replay: the source waits for room; nothing is dropped
    DROP_OLDEST = "drop_oldest"  # live camera: the oldest queued part becomes a NO-READ (counted)


@dataclass(frozen=True, slots=True)
class Trigger:
    """One part: made at the trigger, before the image exists."""

    part_id: str
    seq: int
    camera: str
    t_mono: float
    t_wall: float
    deadline_mono: float

    def frame(self, image: np.ndarray | None, *, source: str = "", error: str | None = None,
              error_reason: Reason = Reason.UNREADABLE, reference: np.ndarray | None = None,
              meta: dict[str, Any] | None = None) -> Frame:
        """The frame for this trigger. With ``image=None`` give ``error`` (and ``error_reason``,
        e.g. ``Reason.CAMERA_OFFLINE``): the part becomes a NO-READ with that reason."""
        if image is None and error is None:
            error = "no image"
        return Frame(part_id=self.part_id, seq=self.seq, camera=self.camera, trigger_mono=self.t_mono,
                     trigger_wall=self.t_wall, deadline_mono=self.deadline_mono, image=image,
                     source=source, error=error, error_reason=error_reason, reference=reference,
                     meta=meta or {})


class PartFactory:
    """Makes part ids and deadlines. Ids are unique across restarts: ``<run tag>-<sequence>``, where
    the run tag is the start time plus random bits (two runs in one second still differ)."""

    def __init__(self, deadline_s: float, run_tag: str | None = None) -> None:
        self.deadline_s = deadline_s
        self.run_tag = run_tag or f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def trigger(self, camera: str, t_mono: float | None = None) -> Trigger:
        with self._lock:
            seq = next(self._seq)
        t = time.monotonic() if t_mono is None else t_mono
        return Trigger(part_id=f"{self.run_tag}-{seq:06d}", seq=seq, camera=camera, t_mono=t,
                       t_wall=time.time(), deadline_mono=t + self.deadline_s)


class Source(ABC):
    """A camera, a replay folder, a synthetic generator.

    ``frames`` yields one :class:`Frame` per trigger and stops when ``stop`` is set or the source is
    exhausted. A trigger whose image cannot be had still yields a frame, with ``image=None`` and an
    ``error``: the policy turns it into a NO-READ, so no part is ever silent.
    """

    name: str = "source"
    buffer_strategy: BufferStrategy = BufferStrategy.WAIT

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device. Raise :class:`edge_inspector.errors.StartupError` with a clear message."""

    @abstractmethod
    def frames(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device. Must be safe to call twice."""

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "state": "online"}
