"""The daemon: a capture thread, a bounded queue, the inspection worker, the outputs.

    capture thread --(bounded queue)--> worker: Inspector.inspect -> Outputs.emit

Shutdown (SIGTERM/SIGINT, or ``max_parts`` reached): the capture thread stops taking triggers, the
worker finishes every part already triggered, the outputs are closed, and ``run`` returns 0. A part
that cannot be inspected gets a NO-READ decision, never silence: a full queue under the drop-oldest
strategy turns the oldest waiting part into a NO-READ (reason ``queue_overflow``).
"""

from __future__ import annotations

import collections
import queue
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from edge_inspector.capture import BufferStrategy, PartFactory, Source, build_source
from edge_inspector.capture.triggers import TimerTrigger, TriggerBus
from edge_inspector.config import Config
from edge_inspector.envelope import Frame, Inspection, Outcome, Reason
from edge_inspector.judge import build_judge
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.images import RejectImages
from edge_inspector.outputs.store import Store
from edge_inspector.pipeline import Inspector
from edge_inspector.policy import Policy
from edge_inspector.regions import build_regions

log = structlog.get_logger(__name__)

_END = object()


class Service:
    """Something that runs beside the inspection loop for the station's lifetime (the control
    socket, the MQTT publisher, the systemd notifier...). ``start`` must not block."""

    name = "service"

    def start(self, station: Station) -> None:  # noqa: B027 - optional hook
        """Called once the source is open, before the first trigger."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Called after the last decision was emitted and the outputs were closed."""


@dataclass
class Counters:
    triggers: int = 0
    decisions: int = 0
    overflow: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})


class HookedPartFactory(PartFactory):
    """A PartFactory that tells ``hooks`` of each part as it is made, in the thread that triggered
    it and before the image exists: the PLC link arms the part at its bridge with the deadline then.
    A failing hook is logged; the part goes on."""

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
    """The running station: wires the stages together and runs the two threads."""

    def __init__(self, cfg: Config, source: Source, inspector: Inspector, outputs: Outputs,
                 services: list[Service] | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.inspector = inspector
        self.outputs = outputs
        self.services = services or []
        self.last_progress_mono = time.monotonic()  # the worker's last sign of life (watchdog)
        self.triggers: TriggerBus = getattr(source, "triggers", None) or TriggerBus()
        self.parts = HookedPartFactory(cfg.policy.deadline_ms / 1000)  # hooks: the PLC link arms parts
        self.queue: queue.Queue = queue.Queue(maxsize=cfg.pipeline.queue_size)
        self.overflow: collections.deque[Frame] = collections.deque()
        self.stop = threading.Event()
        self.counters = Counters()
        self.last: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self._lock = threading.Lock()
        self._room = threading.Condition()  # the worker took a part: a paced source may trigger
        # service hooks (edge_inspector/service): pause, readiness, watchdog, reload between parts
        self.paused = threading.Event()  # set: every trigger becomes a NO-READ "paused", no model call
        self.ready = threading.Event()  # set once the services are started and the loop runs
        self.part_started_mono: float | None = None  # the part the worker is on, None when idle
        self.worker_thread: threading.Thread | None = None
        self.failure: str | None = None  # a thread that died: run() returns 1 (systemd restarts)
        self.config_path: str | None = None  # what SIGHUP reloads (None: started without a file)
        self.overrides: list[str] = []
        self._between: collections.deque = collections.deque()  # callables run between two parts
        self._part_lock = threading.Lock()  # held while the worker inspects and emits one part

    @classmethod
    def build(cls, cfg: Config, config_path: str | None = None, overrides: list[str] | None = None
              ) -> Station:
        """Load everything the station needs; a missing device or file raises StartupError.
        ``config_path`` and ``overrides`` are what a SIGHUP reloads."""
        regions = build_regions(cfg.regions)
        judge = build_judge(cfg.judge, regions.threshold)
        inspector = Inspector(regions, judge, Policy(cfg.policy), cfg.pipeline.judge_grace_ms / 1000)
        triggers = TriggerBus()  # software-triggered cameras wait on it; timer, PLC, commands fire it
        source = build_source(cfg.capture, triggers=triggers)
        data = cfg.station.data_dir
        images = RejectImages(cfg.images, data / "rejects")
        images.prune()
        mqtt = None
        if cfg.mqtt.active:  # the result goes into the outbox in the row's transaction (outputs/mqtt)
            from edge_inspector.outputs.mqtt.link import build_mqtt

            mqtt = build_mqtt(cfg, inspector.model_hash)
        store = Store(cfg.db_path, images, inspector.model_hash, cfg.fingerprint(),
                      same_transaction=[mqtt.outbox.write] if mqtt else None)
        from edge_inspector.plc import PlcService, build_plc

        plc = build_plc(cfg, getattr(source, "triggers", None))  # None without a PLC link
        outputs = Outputs(([plc] if plc else []) + ([store, mqtt.output] if mqtt else [store]))
        from edge_inspector.service import station_services

        station = cls(cfg, source, inspector, outputs, [mqtt.publisher] if mqtt else None)
        station.config_path, station.overrides = config_path, list(overrides or [])
        if plc is not None:  # the PLC link is the first output, arms each part, runs beside the loop
            station.parts.hooks.append(plc.arm)
            station.services.insert(0, PlcService(plc))
        station.services.extend(station_services(cfg))  # the systemd notifier last: READY comes last
        return station

    # --- capture thread ---------------------------------------------------------------------

    def _capture(self, max_parts: int | None) -> None:
        # A replay (wait) is paced by the station: its next part is triggered once the worker has
        # taken the previous one, so a part's deadline never runs out in the queue.
        paced = self.source.buffer_strategy is BufferStrategy.WAIT
        try:
            frames = iter(self.source.frames(self.parts, self.stop))
            while max_parts is None or self.counters.triggers < max_parts:
                while paced and not (self.queue.empty() or self.stop.is_set()):
                    with self._room:
                        self._room.wait_for(lambda: self.queue.empty() or self.stop.is_set(), 0.5)
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
            with self._room:
                self._room.notify_all()
            if item is _END:
                while self.overflow:
                    self._handle(self.overflow.popleft())
                return
            self._handle(item)

    def _handle(self, frame: Frame) -> None:
        with self._part_lock:
            self._run_between()
            self.part_started_mono = time.monotonic()
            if self.paused.is_set():  # still one decision per trigger: a NO-READ, the fail-safe action
                frame = replace(frame, image=None, error="the station is paused", error_reason=Reason.PAUSED)
            inspection = self.inspector.inspect(frame)
            self.outputs.emit(inspection)
            self._count(inspection)
            self.last_progress_mono = time.monotonic()
            self.part_started_mono = None

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

    # --- lifecycle --------------------------------------------------------------------------

    def run(self, max_parts: int | None = None, install_signals: bool = True) -> int:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda s, _f: self.request_stop(signal.Signals(s).name))
            signal.signal(signal.SIGHUP, lambda s, _f: self.request_reload("SIGHUP"))
        self.source.open()
        timer = None
        if self.cfg.triggers.timer_hz and getattr(self.source, "triggers", None) is self.triggers:
            timer = TimerTrigger(self.triggers, self.cfg.triggers.timer_hz).start()
        for service in self.services:
            service.start(self)
        log.info("station_started", station=self.cfg.station.name, source=self.source.name,
                 model=self.inspector.model_hash, config=self.cfg.fingerprint())
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
            if timer is not None:
                timer.stop()
            self.stop.set()
            capture.join(5)
            self.triggers.close()
            self.source.close()
            self.inspector.close()
            self.outputs.close()
            for service in reversed(self.services):
                try:
                    service.stop()
                except Exception as exc:  # noqa: BLE001 - stopping must go on
                    log.error("service_stop_failed", service=service.name, error=str(exc))
        log.info("station_stopped", triggers=self.counters.triggers, decisions=self.counters.decisions,
                 **{k.lower().replace("-", "_"): v for k, v in self.counters.outcomes.items()})
        return 1 if self.failure else 0

    def _work_guarded(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.failure = f"worker: {type(exc).__name__}: {exc}"
            log.error("worker_failed", error=self.failure)
            raise

    def request_stop(self, why: str = "request") -> None:
        log.info("stopping", why=why)
        self.stop.set()
        with self._room:
            self._room.notify_all()

    def request_reload(self, why: str = "request") -> bool:
        """Ask the reload service for a new config (SIGHUP, control socket). Never blocks."""
        for service in self.services:
            if hasattr(service, "request_reload"):
                return service.request_reload(why)
        log.warning("reload_unavailable", why=why, detail="no reload service")
        return False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"station": self.cfg.station.name, "queue_depth": self.queue.qsize(),
                    "counters": {"triggers": self.counters.triggers, "decisions": self.counters.decisions,
                                 "overflow": self.counters.overflow, **self.counters.outcomes},
                    "source": self.source.health(), "outputs": self.outputs.health(),
                    "last": list(self.last), "time": time.time()}
