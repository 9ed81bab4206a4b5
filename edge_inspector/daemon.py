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
        self.parts = PartFactory(cfg.policy.deadline_ms / 1000)
        self.queue: queue.Queue = queue.Queue(maxsize=cfg.pipeline.queue_size)
        self.overflow: collections.deque[Frame] = collections.deque()
        self.stop = threading.Event()
        self.counters = Counters()
        self.last: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self._lock = threading.Lock()

    @classmethod
    def build(cls, cfg: Config) -> Station:
        """Load everything the station needs; a missing device or file raises StartupError."""
        regions = build_regions(cfg.regions)
        judge = build_judge(cfg.judge, regions.threshold)
        inspector = Inspector(regions, judge, Policy(cfg.policy), cfg.pipeline.judge_grace_ms / 1000)
        source = build_source(cfg.capture)
        data = cfg.station.data_dir
        images = RejectImages(cfg.images, data / "rejects")
        images.prune()
        outputs = Outputs([Store(cfg.db_path, images, inspector.model_hash, cfg.fingerprint())])
        return cls(cfg, source, inspector, outputs)

    # --- capture thread ---------------------------------------------------------------------

    def _capture(self, max_parts: int | None) -> None:
        try:
            for frame in self.source.frames(self.parts, self.stop):
                self.counters.triggers += 1
                self._enqueue(frame)
                if max_parts is not None and self.counters.triggers >= max_parts:
                    break
        except Exception as exc:  # noqa: BLE001 - a dying source must not take the worker with it
            log.error("capture_failed", source=self.source.name, error=f"{type(exc).__name__}: {exc}")
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
            if item is _END:
                while self.overflow:
                    self._handle(self.overflow.popleft())
                return
            self._handle(item)

    def _handle(self, frame: Frame) -> None:
        inspection = self.inspector.inspect(frame)
        self.outputs.emit(inspection)
        self._count(inspection)
        self.last_progress_mono = time.monotonic()

    def _count(self, inspection: Inspection) -> None:
        d = inspection.decision
        with self._lock:
            self.counters.decisions += 1
            self.counters.outcomes[d.outcome.value] += 1
            self.last.append({"part_id": d.part_id, "outcome": str(d.outcome), "reason": str(d.reason)})
        log.info("decision", part_id=d.part_id, outcome=str(d.outcome), action=str(d.action),
                 reason=str(d.reason), boxes=len(inspection.regions.boxes) if inspection.regions else 0,
                 total_ms=round(d.timings_ms.get("total", 0.0), 2))

    # --- lifecycle --------------------------------------------------------------------------

    def run(self, max_parts: int | None = None, install_signals: bool = True) -> int:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda s, _f: self.request_stop(signal.Signals(s).name))
        self.source.open()
        for service in self.services:
            service.start(self)
        log.info("station_started", station=self.cfg.station.name, source=self.source.name,
                 model=self.inspector.model_hash, config=self.cfg.fingerprint())
        capture = threading.Thread(target=self._capture, args=(max_parts,), name="capture", daemon=True)
        worker = threading.Thread(target=self._work, name="worker", daemon=True)
        worker.start()
        capture.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        finally:
            self.stop.set()
            capture.join(5)
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
        return 0

    def request_stop(self, why: str = "request") -> None:
        log.info("stopping", why=why)
        self.stop.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"station": self.cfg.station.name, "queue_depth": self.queue.qsize(),
                    "counters": {"triggers": self.counters.triggers, "decisions": self.counters.decisions,
                                 "overflow": self.counters.overflow, **self.counters.outcomes},
                    "source": self.source.health(), "outputs": self.outputs.health(),
                    "last": list(self.last), "time": time.time()}
