"""Prometheus metrics (prometheus_client), in the station's own registry.

Per decision (``observe``, on the worker thread, a few microseconds): decisions by camera, outcome
and reason, per-stage latency histograms, judge votes and invalid votes, cascade skips. At scrape time
(``StationCollector``, on the API thread): queue depth, outbox backlog, PLC link and camera state,
last-decision age, read from the station's snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from edge_inspector.envelope import Inspection

PREFIX = "edge_inspector"
STAGES = ("capture", "queue", "regions", "judge", "policy", "total")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GOOD = ("ok", "ready", "online", "connected", "idle", "running")


class Metrics:
    """The per-decision metrics; ``render`` is what /metrics answers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(f"{PREFIX}_decisions", "Decisions by camera (or view set), outcome "
                                 "and reason.", ["camera", "outcome", "reason"], registry=r)
        self.stage = Histogram(f"{PREFIX}_stage_seconds", "Time a part spent in each stage.", ["stage"],
                               buckets=BUCKETS, registry=r)
        self.votes = Counter(f"{PREFIX}_judge_votes", "Judge votes by answer (defective, good, invalid).",
                             ["answer"], registry=r)
        self.invalid = Counter(f"{PREFIX}_judge_invalid_votes", "Votes that did not parse.", registry=r)
        self.cascade = Counter(f"{PREFIX}_cascade_skips", "Parts the cascade decided without the VLM.",
                               registry=r)
        self.feed_dropped = Counter(f"{PREFIX}_feed_dropped", "Live-feed events dropped for slow "
                                    "HTTP clients.", registry=r)
        self._stage = {s: self.stage.labels(stage=s) for s in STAGES}
        self._answer = {k: self.votes.labels(answer=k) for k in ("defective", "good", "invalid")}
        self.last_decision_mono: float | None = None

    def observe(self, inspection: Inspection) -> None:
        d = inspection.decision
        self.decisions.labels(camera=str(inspection.frame.camera), outcome=str(d.outcome),
                              reason=str(d.reason)).inc()
        for name, ms in d.timings_ms.items():
            child = self._stage.get(name)
            if child is not None and ms is not None:
                child.observe(ms / 1000.0)
        v = inspection.verdict
        if v is not None:
            for vote in v.votes:
                key = "invalid" if vote.defective is None else ("defective" if vote.defective else "good")
                self._answer[key].inc()
                if vote.defective is None:
                    self.invalid.inc()
            if "cascade_pass_below" in v.details:  # the VLM judge passed it on the map alone
                self.cascade.inc()
        self.last_decision_mono = time.monotonic()

    def attach(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Read the station's snapshot at each scrape (the gauges)."""
        self.registry.register(StationCollector(snapshot, self))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StationCollector:
    """Gauges read at scrape time from the station's snapshot and its services' status."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], metrics: Metrics) -> None:
        self.snapshot, self.metrics = snapshot, metrics

    def describe(self):  # no description at registration: collect reads the live station
        return []

    def collect(self):
        snap = self.snapshot()
        queue = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Parts waiting for inspection.")
        queue.add_metric([], snap.get("queue_depth", 0))
        yield queue
        links = GaugeMetricFamily(f"{PREFIX}_link_up", "1: the link (store, PLC, MQTT) is healthy.",
                                  labels=["link", "state"])
        for link in snap.get("outputs") or []:
            state = str(link.get("state", "?"))
            links.add_metric([str(link.get("name", "?")), state], 1.0 if state in GOOD else 0.0)
        yield links
        units = snap.get("cameras") or []  # a multi-camera station: each camera's (or view set's)
        cams = [u["source"] for u in units] if len(units) > 1 else [snap.get("source") or {}]
        camera = GaugeMetricFamily(f"{PREFIX}_camera_up", "1: the camera is online.",
                                   labels=["camera", "state"])
        for cam in cams:
            state = str(cam.get("state", "?"))
            camera.add_metric([str(cam.get("name", "?")), state], 1.0 if state in GOOD else 0.0)
        yield camera
        backlog = GaugeMetricFamily(f"{PREFIX}_outbox_backlog", "MQTT messages not yet published.")
        for link in snap.get("outputs") or []:
            pending = link.get("pending")
            if link.get("name") == "mqtt" and isinstance(pending, int | float):
                backlog.add_metric([], pending)
        yield backlog
        age = GaugeMetricFamily(f"{PREFIX}_last_decision_age_seconds",
                                "Seconds since the last decision (NaN before the first).")
        last = self.metrics.last_decision_mono
        age.add_metric([], float("nan") if last is None else time.monotonic() - last)
        yield age
