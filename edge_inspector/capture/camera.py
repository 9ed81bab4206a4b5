"""What the camera sources (Basler, OpenCV) share: state, health, triggers while down, reconnect.

A :class:`CameraSource` has a state (online / reconnecting / offline, logged as ``camera_state``
events and shown in :meth:`CameraSource.health`), counters in ``stats``, and two ways of making
parts chosen by ``cfg.trigger``:

- ``software``: each event on the :class:`~edge_inspector.capture.triggers.TriggerBus` makes one
  part and one frame (:meth:`CameraSource._grab`); an event after ``stop`` becomes a
  ``Reason.CAMERA_OFFLINE`` frame, so every event fired becomes a frame.
- anything else: the subclass's :meth:`CameraSource._streaming` makes a part per captured frame.

:meth:`CameraSource._reopen` is the reopen-with-exponential-back-off loop both reconnects use.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import structlog

from edge_inspector.capture.base import PartFactory, Source, Trigger
from edge_inspector.capture.triggers import CameraState, TriggerBus, TriggerEvent
from edge_inspector.envelope import Frame, Reason
from edge_inspector.errors import StartupError

log = structlog.get_logger(__name__)

H = TypeVar("H")  # what a subclass's connect returns: a camera handle


class CameraSource(Source):
    """A camera's state machine, health, offline frames, trigger dispatch and reopen loop.

    ``cfg`` needs ``name``, ``trigger``, ``reconnect_backoff_s``, ``reconnect_max_s`` and
    ``offline_after_attempts``. Subclasses set ``kind`` and ``buffer_strategy``.
    """

    kind: str = "camera"

    def __init__(self, cfg: Any, triggers: TriggerBus | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.triggers = triggers or TriggerBus()
        self.stats: Counter[str] = Counter()
        self._state = CameraState.OFFLINE
        self._closing = threading.Event()

    # -- hooks -----------------------------------------------------------------------------------

    @abstractmethod
    def _device_label(self) -> str:
        """The device as health and ``camera_state`` events name it."""

    def _offline_source(self) -> str:
        """The ``source`` of a frame made for a trigger while the camera is down."""
        return ""

    @abstractmethod
    def _grab(self, trig: Trigger, event: TriggerEvent, stop: threading.Event) -> Frame:
        """Software trigger: the frame for ``trig`` (never raises; a failed grab is a frame)."""

    @abstractmethod
    def _streaming(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        """Every mode but ``software``: a part per captured frame until ``stop``."""

    def _poll(self) -> None:  # noqa: B027 - optional hook
        """Called before each wait for a trigger event (e.g. to notice a removed device)."""

    # -- state and health ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": str(self._state),
                "device": self._device_label(), "trigger": self.cfg.trigger,
                "pending_triggers": self.triggers.pending, **self.stats}

    @property
    def state(self) -> CameraState:
        return self._state

    def _set_state(self, state: CameraState, reason: str) -> None:
        previous, self._state = self._state, state
        if previous is not state:
            emit = log.info if state is CameraState.ONLINE or reason == "closed" else log.warning
            emit("camera_state", camera=self.name, device=self._device_label(), state=str(state),
                 previous=str(previous), reason=reason)

    # -- frames ----------------------------------------------------------------------------------

    def frames(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        if self.cfg.trigger == "software":
            return self._triggered(parts, stop)
        return self._streaming(parts, stop)

    def _triggered(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        # Ends only once stop is set and the bus is empty: every event fired becomes a frame.
        while True:
            self._poll()
            event = self.triggers.wait(0.05)
            if event is None:
                if stop.is_set() or self.triggers.closed:
                    return
                continue
            trig = parts.trigger(self.name, t_mono=event.t_mono)
            if stop.is_set():
                yield self._offline(trig, event, "the source stopped before the grab")
            else:
                yield self._grab(trig, event, stop)

    def _offline(self, trig: Trigger, event: TriggerEvent, error: str) -> Frame:
        self.stats["offline_triggers"] += 1
        log.warning("trigger_while_camera_down", camera=self.name, part_id=trig.part_id,
                    state=str(self._state), error=error)
        return trig.frame(None, source=self._offline_source(), error=error,
                          error_reason=Reason.CAMERA_OFFLINE, meta=event.meta())

    # -- reconnect -------------------------------------------------------------------------------

    def _reopen(self, connect: Callable[[], H | None],
                failure_fields: Callable[[StartupError | None, float], dict[str, Any]],
                ) -> tuple[H, int] | None:
        """Call ``connect`` after ``reconnect_backoff_s``, doubling the wait (up to
        ``reconnect_max_s``) after each failure, until it returns a handle: ``(handle, attempts)``;
        None once the source is closing. ``connect`` fails by returning None or raising
        StartupError; each failure is logged (``camera_reopen_failed`` with ``failure_fields(error,
        next wait)``) and after ``offline_after_attempts`` of them the state goes to offline."""
        delay, attempt = self.cfg.reconnect_backoff_s, 0
        while not self._closing.wait(delay):
            attempt += 1
            error: StartupError | None = None
            try:
                handle = connect()
            except StartupError as exc:
                handle, error = None, exc
            if handle is not None:
                return handle, attempt
            next_in_s = min(delay * 2, self.cfg.reconnect_max_s)
            log.warning("camera_reopen_failed", camera=self.name, attempt=attempt,
                        **failure_fields(error, next_in_s))
            if attempt >= self.cfg.offline_after_attempts:
                self._set_state(CameraState.OFFLINE, f"{attempt} reopen attempts failed")
            delay = next_in_s
        return None

    def _reopened(self, attempts: int) -> None:
        self.stats["reconnects"] += 1
        self._set_state(CameraState.ONLINE, f"reopened after {attempts} attempt(s)")
