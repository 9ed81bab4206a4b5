"""The running station: a capture thread, a bounded queue, the inspection worker, the outputs, the
services beside them (``daemon.py`` builds it from a config).

    capture thread --(bounded queue)--> worker: Inspector.inspect -> Outputs.emit
    beside the loop (``lifecycle.Service``): PLC link, MQTT, retention, reload, control socket, systemd

Start (:meth:`Station.run`): the source is opened, the services start in order (the PLC link first,
the systemd notifier last, so READY=1 goes out when everything else is up), then the two threads.

Shutdown (SIGTERM/SIGINT, ``max_parts`` reached, the source exhausted), in this order, each step once:

1. the triggers stop: the timer, the trigger bus, the capture thread (the source is closed once that
   thread has ended, never under it);
2. the worker drains: every part already triggered gets its decision, delivered and recorded; a
   full queue under the drop-oldest strategy has turned the oldest parts into NO-READs
   (``queue_overflow``), never silence;
3. the services stop, the last started first: systemd's STOPPING, the control socket, reload,
   retention, the MQTT flush and ``offline``, the PLC link after the last decision was answered;
4. the stages and the outputs close: the store's connection last, when no thread can use it.

``run`` returns 0, or 1 when a thread died (systemd restarts the daemon).
"""

from __future__ import annotations

import collections
import queue
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector import logs
from edge_inspector.capture import BufferStrategy, PartFactory, Source
from edge_inspector.capture.triggers import TimerTrigger, TriggerBus
from edge_inspector.commands import Dispatcher, Request
from edge_inspector.envelope import Frame, Inspection, Outcome, Reason
from edge_inspector.lifecycle import Listener, Services
from edge_inspector.outputs import Outputs

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.pipeline import Inspector
    from edge_inspector.stages import Stages
    from edge_inspector.versions import Versions

log = structlog.get_logger(__name__)

_END = object()
CAPTURE_JOIN_S = 5.0  # a capture thread that does not end by then is stuck in its source
WORKER_JOIN_S = 300.0  # each part is bounded by its deadline; this only guards against a bug


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

    def trigger(self, camera: str, t_mono: float | None = None):
        trig = super().trigger(camera, t_mono)
        for hook in self.hooks:
            try:
                hook(trig)
            except Exception as exc:  # noqa: BLE001 - a hook must never lose the part
                log.error("trigger_hook_failed", part_id=trig.part_id,
                          error=f"{type(exc).__name__}: {exc}")
        return trig


class Station:
    """The running station: the two threads, the stages in force, the services, the shutdown."""

    def __init__(self, stages: Stages, source: Source, outputs: Outputs,
                 triggers: TriggerBus | None = None) -> None:
        self._stages = stages
        self.source = source
        self.outputs = outputs
        self.triggers = triggers or TriggerBus()
        self.services = Services()
        self.dispatcher: Dispatcher | None = None  # the command table (wiring): SIGHUP goes through it
        self.last_progress_mono = time.monotonic()  # the worker's last sign of life (watchdog)
        self.parts = HookedPartFactory(stages.cfg.policy.deadline_ms / 1000)  # the PLC link arms parts
        self.queue: queue.Queue = queue.Queue(maxsize=stages.cfg.pipeline.queue_size)
        self.overflow: collections.deque[Frame] = collections.deque()
        self.stop = threading.Event()
        self.counters = Counters()
        self.last: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        self._room = threading.Condition()  # a part was decided: a paced source may trigger
        self.paused = threading.Event()  # set: every trigger becomes a NO-READ "paused", no model call
        self.paused_reason = ""
        self.ready = threading.Event()  # set once the services are started and the loop runs
        self.part_started_mono: float | None = None  # the part the worker is on, None when idle
        self.worker_thread: threading.Thread | None = None
        self.failure: str | None = None  # a thread that died: run() returns 1 (systemd restarts)
        self._listeners: list[Listener] = []
        self._between: collections.deque = collections.deque()  # callables run between two parts
        self._part_lock = threading.Lock()  # held while the worker inspects and emits one part
        self._ran = False

    # --- what is in force ---------------------------------------------------------------------

    @property
    def cfg(self) -> Config:
        return self._stages.cfg

    @property
    def inspector(self) -> Inspector:
        return self._stages.inspector

    @property
    def versions(self) -> Versions:
        return self._stages.versions

    @property
    def recording_fault(self) -> str | None:  # why it cannot record (a failed write), or None
        return self.outputs.fault()

    def install(self, stages: Stages) -> bool:
        """Put new stages in force between two parts (the part in hand finishes under the old ones,
        which are then closed). False, with the new ones closed, once the loop has ended."""
        applied: list[bool] = []

        def swap() -> None:
            worker = self.worker_thread
            ended = worker is not None and not worker.is_alive()
            if ended or (self.stop.is_set() and worker is None):  # the loop ended, or never ran
                stages.close()
                applied.append(False)
                return
            old, self._stages = self._stages, stages
            self.parts.deadline_s = stages.cfg.policy.deadline_ms / 1000
            logs.configure(stages.cfg.logging.level, stages.cfg.logging.format)
            applied.append(True)
            try:
                old.close()
            except Exception as exc:  # noqa: BLE001
                log.error("reload_close_old_failed", error=str(exc))

        self.between_parts(swap)
        if applied and applied[0]:
            self._changed("installed")
            return True
        return False

    # --- commands, listeners --------------------------------------------------------------------

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self, what: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(what)
            except Exception as exc:  # noqa: BLE001 - a listener never breaks the station
                log.error("listener_failed", what=what, error=f"{type(exc).__name__}: {exc}")

    def pause(self, via: str, reason: str = "") -> bool:
        """Every later trigger is a NO-READ (reason paused, its fail-safe action) until resume."""
        was_running = not self.paused.is_set()
        self.paused_reason = reason or f"paused via {via}"
        self.paused.set()
        if was_running:
            log.warning("station_paused", via=via, reason=reason,
                        detail="every trigger is a NO-READ (reason paused) until resume")
        self._changed("paused")
        return was_running

    def resume(self, via: str, note: str = "") -> bool:
        was_paused = self.paused.is_set()
        self.paused.clear()
        self.paused_reason = ""
        if was_paused:
            log.info("station_resumed", via=via, note=note)
        self._changed("resumed")
        return was_paused

    # --- capture thread ---------------------------------------------------------------------

    def _capture(self, max_parts: int | None) -> None:
        # A replay (wait) is paced: its next part is triggered once the previous one is decided.
        paced = self.source.buffer_strategy is BufferStrategy.WAIT
        decided = lambda c=self.counters: c.decisions >= c.triggers or self.stop.is_set()  # noqa: E731
        try:
            frames = iter(self.source.frames(self.parts, self.stop))
            while max_parts is None or self.counters.triggers < max_parts:
                while paced and not decided():
                    with self._room:
                        self._room.wait_for(decided, 0.5)
                frame = next(frames, None)
                if frame is None:
                    break
                self.counters.triggers += 1
                self._enqueue(frame)
        except Exception as exc:  # noqa: BLE001 - a dying source must not take the worker with it
            log.error("capture_failed", source=self.source.name, error=f"{type(exc).__name__}: {exc}")
            self.failure = f"capture: {type(exc).__name__}: {exc}"
        finally:
            self.queue.put(_END)

    def _enqueue(self, frame: Frame) -> None:
        if self.source.buffer_strategy is BufferStrategy.WAIT:
            self.queue.put(frame)  # the replay waits for room
            return
        while True:
            try:
                self.queue.put_nowait(frame)
                return
            except queue.Full:
                try:
                    oldest = self.queue.get_nowait()
                except queue.Empty:
                    continue
                if oldest is _END:  # never drop the end marker
                    self.queue.put(oldest)
                    continue
                self.counters.overflow += 1
                self.overflow.append(replace(oldest, image=None, error="dropped: the inspection queue "
                                             "was full", error_reason=Reason.OVERFLOW))
                log.warning("queue_overflow", part_id=oldest.part_id, dropped=self.counters.overflow)

    # --- worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            while self.overflow:
                self._handle(self.overflow.popleft())
            item = self.queue.get()
            if item is _END:
                while self.overflow:
                    self._handle(self.overflow.popleft())
                return
            self._handle(item)

    def _handle(self, frame: Frame) -> None:
        with self._part_lock:
            self._run_between()
            self.part_started_mono = time.monotonic()
            fault = self.recording_fault
            if self.paused.is_set():  # still one decision per trigger: a NO-READ, the fail-safe action
                frame = replace(frame, image=None, error="the station is paused", error_reason=Reason.PAUSED)
            elif fault:  # a station that cannot record fail-safes; this part's row tries again
                frame = replace(frame, image=None, error=f"cannot record: {fault}",
                                error_reason=Reason.NOT_RECORDED)
            inspection = self._stages.inspector.inspect(frame)
            self.outputs.emit(inspection)
            if (self.recording_fault is None) != (fault is None):
                self._changed("fault" if fault is None else "recovered")
            self._count(inspection)
            self.last_progress_mono = time.monotonic()
            self.part_started_mono = None
        with self._room:  # decided: a paced source may trigger the next
            self._room.notify_all()

    def between_parts(self, fn) -> None:
        """Run ``fn()`` while no part is being inspected: at once when the worker is idle, else as
        soon as the part in hand is emitted (whichever of this thread and the worker comes first)."""
        self._between.append(fn)
        with self._part_lock:
            self._run_between()

    def _run_between(self) -> None:
        while self._between:
            try:
                fn = self._between.popleft()
            except IndexError:
                return
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a hook must never take the worker down
                log.error("between_parts_failed", error=f"{type(exc).__name__}: {exc}")

    def _count(self, inspection: Inspection) -> None:
        d = inspection.decision
        with self._lock:
            self.counters.decisions += 1
            self.counters.outcomes[d.outcome.value] += 1
            self.last.append({"part_id": d.part_id, "outcome": str(d.outcome), "reason": str(d.reason),
                              "camera": inspection.frame.camera, "trigger_time": inspection.frame.trigger_wall,
                              "t_total_ms": d.timings_ms.get("total")})
        log.info("decision", part_id=d.part_id, outcome=str(d.outcome), action=str(d.action),
                 reason=str(d.reason), boxes=len(inspection.regions.boxes) if inspection.regions else 0,
                 total_ms=round(d.timings_ms.get("total", 0.0), 2))

    def _work_guarded(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.failure = f"worker: {type(exc).__name__}: {exc}"
            log.error("worker_failed", error=self.failure)
            raise

    # --- lifecycle --------------------------------------------------------------------------

    def run(self, max_parts: int | None = None, install_signals: bool = True) -> int:
        if self._ran:
            raise RuntimeError("a station runs once")
        self._ran = True
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda s, _f: self.request_stop(signal.Signals(s).name))
            signal.signal(signal.SIGHUP, lambda s, _f: self.request_reload("SIGHUP"))
        try:
            self.source.open()
            self.services.start_all()
        except BaseException:
            self.source.close()
            self._close()
            raise
        timer = None
        # a software-triggered camera consumes the station's bus (a source attribute, not a service)
        if self.cfg.triggers.timer_hz and getattr(self.source, "triggers", None) is self.triggers:
            timer = TimerTrigger(self.triggers, self.cfg.triggers.timer_hz).start()
        log.info("station_started", station=self.cfg.station.name, source=self.source.name,
                 model=self.versions.model, config=self.versions.config)
        capture = threading.Thread(target=self._capture, args=(max_parts,), name="capture", daemon=True)
        worker = threading.Thread(target=self._work_guarded, name="worker", daemon=True)
        self.worker_thread = worker
        worker.start()
        capture.start()
        self.ready.set()
        try:
            while worker.is_alive():
                worker.join(0.2)
        finally:
            self._shutdown(capture, worker, timer)
        log.info("station_stopped", triggers=self.counters.triggers, decisions=self.counters.decisions,
                 **{k.lower().replace("-", "_"): v for k, v in self.counters.outcomes.items()})
        return 1 if self.failure else 0

    def _shutdown(self, capture: threading.Thread, worker: threading.Thread, timer: TimerTrigger | None) -> None:
        # 1. the triggers
        self.stop.set()
        with self._room:
            self._room.notify_all()
        if timer is not None:
            timer.stop()
        self.triggers.close()
        capture.join(CAPTURE_JOIN_S)
        while capture.is_alive() and not worker.is_alive():  # the worker died: unblock a waiting put
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                capture.join(0.1)
        if capture.is_alive():
            log.error("capture_stuck", source=self.source.name, detail="the capture thread did not end: "
                      "the source is left open, the parts already triggered are finished")
            self.queue.put(_END)
        # 2. the worker drains
        worker.join(WORKER_JOIN_S)
        if worker.is_alive():
            log.error("worker_stuck", detail="the worker did not finish the parts in hand")
        if not capture.is_alive():
            self.source.close()
        # 3. the services, 4. the stages and the outputs
        self.services.stop_all()
        self._close()

    def _close(self) -> None:
        try:
            self._stages.close()
        except Exception as exc:  # noqa: BLE001 - closing goes on
            log.error("stages_close_failed", error=f"{type(exc).__name__}: {exc}")
        self.outputs.close()

    def request_stop(self, why: str = "request") -> None:
        log.info("stopping", why=why)
        self.stop.set()
        with self._room:
            self._room.notify_all()

    def request_reload(self, why: str = "request") -> bool:
        """The command table's reload (SIGHUP). Never blocks."""
        if self.dispatcher is None:
            log.warning("reload_unavailable", why=why, detail="no command table")
            return False
        return self.dispatcher.dispatch(Request("reload", via=why)).ok

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"station": self.cfg.station.name, "queue_depth": self.queue.qsize(),
                    "counters": {"triggers": self.counters.triggers, "decisions": self.counters.decisions,
                                 "overflow": self.counters.overflow, **self.counters.outcomes},
                    "source": self.source.health(), "outputs": self.outputs.health(),
                    "last": list(self.last), "time": time.time()}
