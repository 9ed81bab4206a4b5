"""The decisions' way out to HTTP: an output at the end of the outputs, that never blocks the worker.

``Feed.emit`` runs on the worker thread after the PLC link, the store and MQTT: it counts the
decision in the metrics and appends a small event to each live-feed client's bounded buffer
(a ``deque`` with ``maxlen``: a slow or stuck client loses its oldest events, counted). That is all:
no system call, no lock a client can hold, nothing that lets another thread take the GIL from the
worker mid-part (waking the client's event loop per decision did, and cost the worker ~0.3 ms of
GIL hand-over). Each client's loop looks at its buffer every ``POLL_S`` instead.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

import structlog

from edge_inspector.api.metrics import Metrics
from edge_inspector.envelope import Inspection
from edge_inspector.outputs.base import Output

log = structlog.get_logger(__name__)

POLL_S = 0.1  # how often a feed client looks at its buffer: the page's latency, never the worker's


def event_of(inspection: Inspection) -> dict[str, Any]:
    """What the live feed says of one decision (the page fetches the rest by part id)."""
    d, f, r, v = inspection.decision, inspection.frame, inspection.regions, inspection.verdict
    return {"part_id": d.part_id, "outcome": str(d.outcome), "reason": str(d.reason),
            "action": str(d.action), "camera": f.camera, "trigger_time": f.trigger_wall,
            "score": round(float(r.score), 4) if r else None, "boxes": len(r.boxes) if r else 0,
            "p_defective": round(v.p_defective, 4) if v else None,
            "decided_by": v.decided_by if v else None,
            "t_total_ms": round(d.timings_ms.get("total", 0.0), 3)}


class Subscriber:
    """One live-feed client: a bounded buffer (deque appends and pops are atomic under the GIL)."""

    def __init__(self, size: int) -> None:
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.dropped = 0
        self.closed = False  # the API is stopping: the stream ends (uvicorn's shutdown waits for it)

    def push(self, event: dict[str, Any]) -> bool:
        """On the worker thread. False when the oldest event had to go."""
        full = len(self.events) == self.events.maxlen
        self.events.append(event)
        if full:
            self.dropped += 1
        return not full

    async def next_batch(self, timeout_s: float) -> list[dict[str, Any]]:
        """On the client's event loop: what arrived, waiting up to ``timeout_s`` for something."""
        waited = 0.0
        while not self.events and not self.closed and waited < timeout_s:
            await asyncio.sleep(POLL_S)
            waited += POLL_S
        out = []
        while self.events:
            out.append(self.events.popleft())
        return out


class Feed(Output):
    """The last output: metrics and the live feed."""

    name = "api_feed"

    def __init__(self, metrics: Metrics, size: int = 64) -> None:
        self.metrics = metrics
        self.size = size
        self._subscribers: tuple[Subscriber, ...] = ()  # replaced, never mutated: the worker reads it
        self._lock = threading.Lock()  # held by subscribe/unsubscribe only, never by emit
        self.sent = 0
        self._closing = False

    def emit(self, inspection: Inspection) -> None:
        self.metrics.observe(inspection)
        subscribers = self._subscribers
        if not subscribers:
            return
        event = event_of(inspection)
        for sub in subscribers:
            if not sub.push(event):
                self.metrics.feed_dropped.inc()
        self.sent += 1

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self.size)
        sub.closed = self._closing
        with self._lock:
            self._subscribers = (*self._subscribers, sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)
        if sub.dropped:
            log.info("feed_client_dropped_events", dropped=sub.dropped)

    def close_streams(self) -> None:
        """End every live-feed stream (the API service's stop), so the server can shut down."""
        self._closing = True
        for sub in self._subscribers:
            sub.closed = True

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "state": "ok", "clients": self.clients}
