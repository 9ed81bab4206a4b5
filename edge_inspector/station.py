"""The running station: a capture thread, a bounded queue, the inspection worker, the outputs, the
services beside them (``daemon.py`` builds it from a config).

    capture thread --(bounded queue, part_queue.py)--> worker: Inspector.inspect -> Outputs.emit
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
import signal
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector import logs
from edge_inspector.capture import BufferStrategy, Source
from edge_inspector.capture.triggers import TimerTrigger, TriggerBus
from edge_inspector.commands import Dispatcher, Request
from edge_inspector.envelope import Frame, Inspection, Reason
from edge_inspector.lifecycle import Listener, Services
from edge_inspector.outputs import Outputs
from edge_inspector.part_queue import PartQueue
from edge_inspector.pipeline import inspect_batch
from edge_inspector.policy.views import combine_views
from edge_inspector.units import Counters, HookedPartFactory, Part, Unit

if TYPE_CHECKING:
    from edge_inspector.config import Config
    from edge_inspector.pipeline import Inspector
    from edge_inspector.capture.base import Trigger
    from edge_inspector.stages import Stages, StationStages
    from edge_inspector.versions import Versions

log = structlog.get_logger(__name__)

CAPTURE_JOIN_S = 5.0  # a capture thread that does not end by then is stuck in its source
WORKER_JOIN_S = 300.0  # each part is bounded by its deadline; this only guards against a bug


class Station:
    """The running station: the two threads, the stages in force, the services, the shutdown."""

    def __init__(self, stages: Stages | StationStages, source: Source | None, outputs: Outputs,
                 triggers: TriggerBus | None = None, units: list[Unit] | None = None) -> None:
        from edge_inspector.stages import StationStages

        self._stages = stages if isinstance(stages, StationStages) else StationStages.of(stages)
        self.outputs = outputs
        if units is None:  # one camera: the station's source, bus and deadline
            if source is None:
                raise ValueError("a station needs a source or its units")
            units = [Unit(source.name, source, HookedPartFactory(self.cfg.policy.deadline_ms / 1000),
                          triggers or TriggerBus(), timer_hz=self.cfg.triggers.timer_hz)]
        self.units = units
        self.services = Services()
        self.dispatcher: Dispatcher | None = None  # the command table (wiring): SIGHUP goes through it
        self.last_progress_mono = time.monotonic()  # the worker's last sign of life (watchdog)
        self.stop = threading.Event()
        self.counters = Counters()
        self.queue = PartQueue(self.cfg.pipeline.queue_size, self.counters)
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
        self._claimed = 0  # triggers claimed against max_parts, by every unit
        self._emitting = threading.local()  # the worker's part in hand while its outputs run

    # --- the first (a single-camera station's only) unit -------------------------------------

    @property
    def source(self) -> Source:
        return self.units[0].source

    @property
    def parts(self) -> HookedPartFactory:
        return self.units[0].parts

    @property
    def triggers(self) -> TriggerBus:
        return self.units[0].triggers

    # --- what is in force ---------------------------------------------------------------------

    @property
    def cfg(self) -> Config:
        return self._stages.cfg

    @property
    def inspector(self) -> Inspector:
        return self._stages.inspector

    @property
    def stages(self) -> StationStages:
        return self._stages

    @property
    def versions(self) -> Versions:
        return self._stages.versions

    def part_versions(self) -> Versions:
        """What the part being emitted is stamped with (its camera's recipe), read by the outputs
        (store, outbox) on the worker thread while they record it; elsewhere :attr:`versions`."""
        camera = getattr(self._emitting, "camera", None)
        return self._stages.versions if camera is None else self._stages.versions_for(camera)

    @property
    def recording_fault(self) -> str | None:  # why it cannot record (a failed write), or None
        return self.outputs.fault()

    def install(self, stages: Stages) -> bool:
        """Put new stages in force between two parts (the part in hand finishes under the old ones,
        which are then closed). False, with the new ones closed, once the loop has ended."""
        from edge_inspector.stages import StationStages

        stages = stages if isinstance(stages, StationStages) else StationStages.of(stages)
        applied: list[bool] = []

        def swap() -> None:
            worker = self.worker_thread
            ended = worker is not None and not worker.is_alive()
            if ended or (self.stop.is_set() and worker is None):  # the loop ended, or never ran
                stages.close()
                applied.append(False)
                return
            if stages.cfg.multi_camera and set(stages.cameras) != set(self._stages.cameras):
                log.error("reload_refused", detail="the cameras changed: restart the daemon for a "
                          "new set of cameras", running=sorted(self._stages.cameras),
                          new=sorted(stages.cameras))
                stages.close()
                applied.append(False)
                return
            old, self._stages = self._stages, stages
            for unit in self.units:
                unit.parts.deadline_s = stages.config_for(unit.cameras[0]).policy.deadline_ms / 1000
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

    # --- capture threads (one per unit) --------------------------------------------------------

    def _claim(self, max_parts: int | None) -> bool:
        with self._lock:
            if max_parts is not None and self._claimed >= max_parts:
                return False
            self._claimed += 1
            return True

    def _capture(self, unit: Unit, max_parts: int | None) -> None:
        # A replay (wait) is paced: its next part is triggered once its previous one is decided.
        paced = unit.source.buffer_strategy is BufferStrategy.WAIT
        decided = lambda u=unit: u.decided >= u.triggered or self.stop.is_set()  # noqa: E731
        try:
            frames = iter(unit.source.frames(unit.parts, self.stop))
            while self._claim(max_parts):
                while paced and not decided():
                    with self._room:
                        self._room.wait_for(decided, 0.5)
                item = next(frames, None)
                if item is None:
                    break
                views = item if isinstance(item, tuple) else (item,)
                unit.parts.settle(views[0].part_id)
                self._accept(unit, views)
        except Exception as exc:  # noqa: BLE001 - a dying source must not take the worker with it
            error = f"{type(exc).__name__}: {exc}"
            unit.failure = error
            log.error("capture_failed", source=unit.source.name, camera=unit.name, error=error,
                      others=[u.name for u in self.units if u is not unit] or None)
            self.failure = f"capture: {error}" if len(self.units) == 1 else f"capture {unit.name}: {error}"
            for trig in unit.parts.take_outstanding():  # triggered, never captured: still decided
                self._accept(unit, self._offline_views(unit, trig, error))
            if len(self.units) > 1:  # the others go on: this camera's later triggers are NO-READs
                self._drain_dropped(unit, error)
        finally:
            self.queue.end()

    @staticmethod
    def _offline_views(unit: Unit, trig: Trigger, error: str) -> tuple[Frame, ...]:
        return tuple(replace(trig, camera=cam).frame(None, error=f"camera {unit.name} dropped: {error}",
                                                     error_reason=Reason.CAMERA_OFFLINE)
                     for cam in (unit.cameras if unit.view_set else (trig.camera,)))

    def _drain_dropped(self, unit: Unit, error: str) -> None:
        """A dropped camera's trigger bus (its PLC lane, its timer, commands): each later event is
        still a part, a ``camera_offline`` NO-READ, until the station stops or every other camera
        has ended (then the station ends, as it does when its only camera ends)."""
        bus = unit.triggers
        others = [u for u in self.units if u is not unit]
        while True:
            event = bus.wait(0.1)
            if event is None:
                if self.stop.is_set() or bus.closed or not any(  # not started yet counts as running
                        u.thread is not None and (u.thread.ident is None or u.thread.is_alive())
                        for u in others):
                    return
                continue
            trig = unit.parts.trigger(unit.name, t_mono=event.t_mono)
            unit.parts.settle(trig.part_id)
            self._accept(unit, self._offline_views(unit, trig, error))

    def _accept(self, unit: Unit, views: tuple[Frame, ...]) -> None:
        with self._lock:
            self.counters.triggers += 1
            unit.triggered += 1
        self.queue.put(Part(unit, views))

    # --- worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        """The worker: each batch the queue gives (``PartQueue.batches``) is judged and emitted."""
        for batch in self.queue.batches(len(self.units)):
            self._handle(batch)

    def _handle(self, batch: list[Part]) -> None:
        with self._part_lock:
            self._run_between()
            self.part_started_mono = time.monotonic()
            fault = self.recording_fault
            stages = self._stages
            parts: list[tuple[Unit, tuple[Frame, ...]]] = []
            for part in batch:
                views = part.views
                if self.paused.is_set():  # still one decision per trigger: a NO-READ, the fail-safe action
                    views = tuple(replace(v, image=None, error="the station is paused",
                                          error_reason=Reason.PAUSED) for v in views)
                elif fault:  # a station that cannot record fail-safes; this part's row tries again
                    views = tuple(replace(v, image=None, error=f"cannot record: {fault}",
                                          error_reason=Reason.NOT_RECORDED) for v in views)
                parts.append((part.unit, views))
            jobs = [(stages.inspector_for(v.camera), v) for _, views in parts for v in views]
            results = inspect_batch(jobs, stages.judge)
            at = 0
            for unit, views in parts:
                got, at = results[at:at + len(views)], at + len(views)
                inspection = combine_views(unit.name, got) if unit.view_set else got[0]
                self._emitting.camera = inspection.frame.camera
                try:
                    self.outputs.emit(inspection)
                finally:
                    self._emitting.camera = None
                self._count(unit, inspection)
                self.last_progress_mono = time.monotonic()
            if (self.recording_fault is None) != (fault is None):
                self._changed("fault" if fault is None else "recovered")
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

    def _count(self, unit: Unit, inspection: Inspection) -> None:
        d = inspection.decision
        with self._lock:
            self.counters.decisions += 1
            self.counters.outcomes[d.outcome.value] += 1
            unit.decided += 1
            unit.outcomes[d.outcome.value] += 1
            self.last.append({"part_id": d.part_id, "outcome": str(d.outcome), "reason": str(d.reason),
                              "camera": inspection.frame.camera, "trigger_time": inspection.frame.trigger_wall,
                              "t_total_ms": d.timings_ms.get("total")})
        log.info("decision", part_id=d.part_id, camera=inspection.frame.camera, outcome=str(d.outcome),
                 action=str(d.action),
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
        opened: list[Unit] = []
        try:
            for unit in self.units:
                unit.source.open()
                opened.append(unit)
            self.services.start_all()
        except BaseException:
            for unit in reversed(opened):
                unit.source.close()
            self._close()
            raise
        timers = []
        for unit in self.units:
            # a software-triggered camera consumes its unit's bus (a source attribute, not a service)
            if unit.timer_hz and getattr(unit.source, "triggers", None) is unit.triggers:
                timers.append(TimerTrigger(unit.triggers, unit.timer_hz).start())
        log.info("station_started", station=self.cfg.station.name,
                 source=self.source.name if len(self.units) == 1 else [u.name for u in self.units],
                 model=self.versions.model, config=self.versions.config)
        worker = threading.Thread(target=self._work_guarded, name="worker", daemon=True)
        for unit in self.units:
            unit.thread = threading.Thread(target=self._capture, args=(unit, max_parts), daemon=True,
                                           name="capture" if len(self.units) == 1 else f"capture-{unit.name}")
        self.worker_thread = worker
        worker.start()
        for unit in self.units:
            unit.thread.start()
        self.ready.set()
        try:
            while worker.is_alive():
                worker.join(0.2)
        finally:
            self._shutdown(worker, timers)
        log.info("station_stopped", triggers=self.counters.triggers, decisions=self.counters.decisions,
                 **{k.lower().replace("-", "_"): v for k, v in self.counters.outcomes.items()})
        return 1 if self.failure else 0

    def _shutdown(self, worker: threading.Thread, timers: list[TimerTrigger]) -> None:
        # 1. the triggers
        self.stop.set()
        with self._room:
            self._room.notify_all()
        for timer in timers:
            timer.stop()
        for unit in self.units:
            unit.triggers.close()
        captures = [u.thread for u in self.units if u.thread is not None]
        deadline = time.monotonic() + CAPTURE_JOIN_S
        for capture in captures:
            capture.join(max(0.0, deadline - time.monotonic()))
        while any(c.is_alive() for c in captures) and not worker.is_alive():  # unblock a waiting put
            self.queue.drain()  # the worker is gone: these parts cannot be decided
            for c in captures:
                c.join(0.1)
        for unit in self.units:
            if unit.thread is not None and unit.thread.is_alive():
                log.error("capture_stuck", source=unit.source.name, detail="the capture thread did not "
                          "end: the source is left open, the parts already triggered are finished")
                self.queue.end()
        # 2. the worker drains
        worker.join(WORKER_JOIN_S)
        if worker.is_alive():
            log.error("worker_stuck", detail="the worker did not finish the parts in hand")
        for unit in self.units:
            if unit.thread is None or not unit.thread.is_alive():
                unit.source.close()
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
                    "cameras": [u.snapshot() for u in self.units],
                    "last": list(self.last), "time": time.time()}
