"""A view set: several cameras that see one part at one trigger (top and bottom of a board).

:class:`ViewSetSource` takes one frame from each camera's source per round, in lock step; the first
camera that triggers in a round makes the part (one part id and deadline, armed once at the set's
PLC lane), and every camera's ``parts.trigger`` returns that part under the camera's name. It yields the part's views, one
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
    """The PartFactory each camera of the set sees: the set's current part, under its name. The
    part is made by the first camera that triggers in a round (its time is the part's)."""

    def __init__(self, parts: PartFactory, name: str) -> None:
        self.parts, self.name = parts, name
        self.current: Trigger | None = None

    def trigger(self, camera: str, t_mono: float | None = None) -> Trigger:
        if self.current is None:
            self.current = self.parts.trigger(self.name, t_mono)
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
        shared = _SharedPart(parts, self.name)
        streams: dict[str, Iterator[Frame]] = {}
        for cam in self.cameras:
            try:
                streams[cam.name] = iter(cam.frames(shared, stop))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - this camera only
                self._drop(cam.name, f"{type(exc).__name__}: {exc}")
        while not stop.is_set() and len(self.dropped) < len(self.cameras):
            shared.current = None
            grabbed = [self._grab(cam.name, streams.get(cam.name), stop) for cam in self.cameras]
            trig = shared.current
            if trig is None:  # no camera triggered this round (the sources ended): no part
                continue
            yield tuple(self._view(frame, trig) if frame is not None else self._offline(cam.name, trig)
                        for cam, frame in zip(self.cameras, grabbed, strict=True))

    def _grab(self, camera: str, stream: Iterator[Frame] | None, stop: threading.Event) -> Frame | None:
        if camera in self.dropped or stream is None:
            return None
        try:
            frame = next(stream, None)
        except Exception as exc:  # noqa: BLE001 - a camera that drops: this view only
            self._drop(camera, f"{type(exc).__name__}: {exc}")
            return None
        if frame is None and not stop.is_set():
            self._drop(camera, "the source ended")
        return frame

    @staticmethod
    def _view(frame: Frame, trig: Trigger) -> Frame:
        return replace(frame, part_id=trig.part_id, seq=trig.seq, trigger_mono=trig.t_mono,
                       trigger_wall=trig.t_wall, deadline_mono=trig.deadline_mono)

    def _offline(self, camera: str, trig: Trigger) -> Frame:
        error = (f"camera {camera} dropped: {self.dropped[camera]}" if camera in self.dropped
                 else "the station stopped before the grab")
        return replace(trig, camera=camera).frame(None, error=error, error_reason=Reason.CAMERA_OFFLINE)

    def _drop(self, camera: str, why: str) -> None:
        if camera not in self.dropped:
            self.dropped[camera] = why
            log.error("camera_dropped", view_set=self.name, camera=camera, error=why,
                      detail="its view of every later part is a NO-READ (camera_offline)")
