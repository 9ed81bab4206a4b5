"""The daemon's trigger input: a small thread-safe bus that software-triggered sources wait on.

A *trigger* means "a part is in front of the camera now". Producers fire it; one source consumes it,
and turns every event into exactly one part (a :class:`~edge_inspector.capture.base.Trigger` made
with the event's time) and one :class:`~edge_inspector.envelope.Frame`. The bus never drops an event:
it is unbounded, and ``pending`` shows a consumer that falls behind.

Producers, and the one call each makes::

    bus = TriggerBus()
    bus.fire("command")                               # the control socket's "trigger" command
    TimerTrigger(bus, rate_hz=5).start()              # a timer (bench, demo, free-running line)
    bus.part_present(mcu_ts=123456, seq=17)           # the PLC bridge's part-present message

``fire`` stamps the event with ``time.monotonic()`` unless the producer passes an earlier ``t_mono``
(the bridge driver passes the time the message's first byte arrived, so the part's deadline starts at
the part, not after parsing). ``part_present`` keeps the MCU's own timestamp and sequence number on the
event (``device_ts``, ``device_seq``); they travel in the frame's ``meta`` so the bridge can match its
armed part to the decision.

The consumer calls ``wait(timeout)``, which returns the oldest pending :class:`TriggerEvent` or
``None`` on timeout. ``close()`` wakes the consumer; events fired before it are still delivered, and
``fire`` after it raises ``RuntimeError`` (a trigger that cannot become a part must not vanish).

This module also holds :class:`CameraState`, the link state that both camera sources report.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import structlog

log = structlog.get_logger(__name__)


class CameraState(StrEnum):
    """A camera's link state, shown in ``health()`` and the logs."""

    ONLINE = "online"
    RECONNECTING = "reconnecting"  # lost: closing, backing off, reopening
    OFFLINE = "offline"  # not opened yet, closed, or several reopen attempts failed (still retrying)


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """One trigger as the producer saw it."""

    t_mono: float  # time.monotonic() of the trigger: the part's deadline counts from here
    origin: str  # "command", "timer", "bridge", ...
    device_ts: int | None = None  # the producer's own clock (the bridge MCU's timestamp, its units)
    device_seq: int | None = None  # the producer's own sequence number (the bridge message's seq)

    def meta(self) -> dict[str, object]:
        out: dict[str, object] = {"trigger_origin": self.origin}
        if self.device_ts is not None:
            out["trigger_device_ts"] = self.device_ts
        if self.device_seq is not None:
            out["trigger_device_seq"] = self.device_seq
        return out


class TriggerBus:
    """A FIFO of trigger events: many producers, one consumer. Thread-safe, never drops."""

    def __init__(self) -> None:
        self._events: deque[TriggerEvent] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.fired = 0

    def fire(self, origin: str = "command", *, t_mono: float | None = None,
             device_ts: int | None = None, device_seq: int | None = None) -> TriggerEvent:
        """Signal one part. Returns the event that was queued."""
        event = TriggerEvent(time.monotonic() if t_mono is None else t_mono, origin, device_ts,
                             device_seq)
        with self._cond:
            if self._closed:
                raise RuntimeError("trigger bus is closed: the trigger cannot become a part")
            self._events.append(event)
            self.fired += 1
            self._cond.notify()
        return event

    def part_present(self, mcu_ts: int, seq: int | None = None, *,
                     t_mono: float | None = None) -> TriggerEvent:
        """The PLC bridge's part-present event, with the MCU's timestamp and message sequence."""
        return self.fire("bridge", t_mono=t_mono, device_ts=mcu_ts, device_seq=seq)

    def wait(self, timeout: float | None = None) -> TriggerEvent | None:
        """The oldest pending event, or ``None`` after ``timeout`` seconds or once closed and empty."""
        with self._cond:
            if not self._events and not self._closed:
                self._cond.wait(timeout)
            return self._events.popleft() if self._events else None

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._events)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class TimerTrigger:
    """Fires ``bus`` at a fixed rate from its own thread, without drift (tick n at t0 + n / rate)."""

    def __init__(self, bus: TriggerBus, rate_hz: float, *, count: int | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be > 0")
        self.bus, self.period, self.count = bus, 1.0 / rate_hz, count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trigger-timer", daemon=True)

    def start(self) -> TimerTrigger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        t0, n = time.monotonic(), 0
        while self.count is None or n < self.count:
            if self._stop.wait(max(0.0, t0 + n * self.period - time.monotonic())):
                return
            try:
                self.bus.fire("timer")
            except RuntimeError:
                return  # the bus closed under us
            n += 1
        log.debug("trigger_timer_done", fired=n)
