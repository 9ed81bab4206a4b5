"""A view set: several cameras that see one part at one trigger (top and bottom of a board).

:class:`ViewSetSource` makes the part (one trigger, one part id and deadline, armed once at the
set's PLC lane) and then takes one frame from each camera's source, in lock step: each camera's
``parts.trigger`` returns that part under the camera's name. It yields the part's views, one
:class:`~edge_inspector.envelope.Frame` per camera, as a tuple. A camera that drops (its source
raises or ends) gives a ``camera_offline`` view for every later part, so the part still has all its
views and still gets its one decision (a NO-READ, unless another view rejects it); the other cameras
go on. The set ends when every camera has ended.

The cameras must make their own triggers (demo, folder, a hardware or free-running camera): a
software-triggered camera would wait on a bus of its own (the config refuses it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import structlog

from edge_inspector.capture.base import BufferStrategy, PartFactory, Source, Trigger
from edge_inspector.envelope import Frame, Reason

log = structlog.get_logger(__name__)


class _SharedPart:
    """The PartFactory each camera of the set sees: the set's current part, under its name."""

    def __init__(self) -> None:
        self.current: Trigger | None = None

    def trigger(self, camera: str, t_mono: float | None = None) -> Trigger:
        if self.current is None:
            raise RuntimeError("a view set camera triggered outside the set's trigger")
        return replace(self.current, camera=camera)


class ViewSetSource(Source):
    def __init__(self, name: str, cameras: list[Source]) -> None:
        self.name = name
        self.cameras = cameras
        waits = all(c.buffer_strategy is BufferStrategy.WAIT for c in cameras)
        self.buffer_strategy = BufferStrategy.WAIT if waits else BufferStrategy.DROP_OLDEST
        self.dropped: dict[str, str] = {}  # camera -> why it dropped

    def open(self) -> None:
        opened: list[Source] = []
        try:
            for cam in self.cameras:
                cam.open()
                opened.append(cam)
        except BaseException:
            for cam in reversed(opened):
                cam.close()
            raise

    def close(self) -> None:
        for cam in reversed(self.cameras):
            try:
                cam.close()
            except Exception as exc:  # noqa: BLE001 - the others still close
                log.error("camera_close_failed", camera=cam.name, error=f"{type(exc).__name__}: {exc}")

    def health(self) -> dict[str, Any]:
        views = []
        for cam in self.cameras:
            h = cam.health()
            if cam.name in self.dropped:
                h = {**h, "state": "dropped", "error": self.dropped[cam.name]}
            views.append(h)
        state = "online" if not self.dropped else ("offline" if len(self.dropped) == len(self.cameras)
                                                   else "degraded")
        return {"name": self.name, "kind": "view_set", "state": state, "views": views}

    def frames(self, parts: PartFactory, stop: threading.Event) -> Iterator[tuple[Frame, ...]]:
        shared = _SharedPart()
        streams: dict[str, Iterator[Frame]] = {}
        for cam in self.cameras:
            try:
                streams[cam.name] = iter(cam.frames(shared, stop))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - this camera only
                self._drop(cam.name, f"{type(exc).__name__}: {exc}")
        while not stop.is_set() and len(self.dropped) < len(self.cameras):
            trig = parts.trigger(self.name)
            shared.current = trig
            yield tuple(self._view(cam.name, streams.get(cam.name), trig) for cam in self.cameras)

    def _view(self, camera: str, stream: Iterator[Frame] | None, trig: Trigger) -> Frame:
        if camera not in self.dropped and stream is not None:
            try:
                frame = next(stream, None)
            except Exception as exc:  # noqa: BLE001 - a camera that drops: this view only
                frame = None
                self._drop(camera, f"{type(exc).__name__}: {exc}")
            if frame is not None:
                return replace(frame, part_id=trig.part_id, seq=trig.seq, trigger_mono=trig.t_mono,
                               trigger_wall=trig.t_wall, deadline_mono=trig.deadline_mono)
            self._drop(camera, "the source ended")
        return replace(trig, camera=camera).frame(
            None, error=f"camera {camera} dropped: {self.dropped.get(camera, 'no source')}",
            error_reason=Reason.CAMERA_OFFLINE)

    def _drop(self, camera: str, why: str) -> None:
        if camera not in self.dropped:
            self.dropped[camera] = why
            log.error("camera_dropped", view_set=self.name, camera=camera, error=why,
                      detail="its view of every later part is a NO-READ (camera_offline)")
