"""The bounded queue between the capture threads and the worker, and its overflow policy.

    capture threads --put--> PartQueue --batches--> worker

A paced source (a replay, ``BufferStrategy.WAIT``) waits for room. A live source never waits: when
the queue is full its oldest droppable part leaves the queue and becomes an overflow part, a
NO-READ ``queue_overflow`` that the worker emits before anything else, so a full queue is never
silence. An end marker or a paced source's part is never dropped. ``station.py`` owns one.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Iterator
from dataclasses import replace

import structlog

from edge_inspector.capture import BufferStrategy
from edge_inspector.envelope import Reason
from edge_inspector.units import Counters, Part

__all__ = ["PartQueue"]

log = structlog.get_logger(__name__)

_END = object()  # one per capture thread: that unit will put no more parts


class PartQueue:
    """Parts waiting for the worker; ``counters.overflow`` counts the parts dropped."""

    def __init__(self, maxsize: int, counters: Counters) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.overflow: collections.deque[Part] = collections.deque()  # dropped: NO-READs to emit
        self._counters = counters

    def qsize(self) -> int:
        return self._q.qsize()

    def put(self, part: Part) -> None:
        if part.unit.source.buffer_strategy is BufferStrategy.WAIT:
            self._q.put(part)  # the replay waits for room
            return
        passed = 0  # queued parts that may not be dropped (an end marker, a paced replay's part)
        while True:
            try:
                self._q.put_nowait(part)
                return
            except queue.Full:
                try:
                    oldest = self._q.get_nowait()
                except queue.Empty:
                    continue
                if oldest is _END or oldest.unit.source.buffer_strategy is BufferStrategy.WAIT:
                    self._q.put(oldest)  # to the back (a paced unit has one part queued at most)
                    passed += 1
                    if passed <= self._q.maxsize:
                        continue
                    oldest, part = part, None  # nothing droppable waits: this part is the overflow
                self._drop(oldest)
                if part is None:
                    return

    def end(self) -> None:
        """A capture thread has ended: the worker stops once every unit has ended and nothing waits."""
        self._q.put(_END)

    def drain(self) -> list:
        """Take everything queued now (parts and end markers), without waiting: at shutdown, room for
        a capture thread blocked in :meth:`put` when the worker is gone."""
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def _drop(self, oldest: Part) -> None:
        self._counters.overflow += 1
        self.overflow.append(Part(oldest.unit, tuple(
            replace(v, image=None, error="dropped: the inspection queue was full",
                    error_reason=Reason.OVERFLOW) for v in oldest.views)))
        log.warning("queue_overflow", part_id=oldest.part_id, camera=oldest.unit.name,
                    dropped=self._counters.overflow)

    def batches(self, units: int) -> Iterator[list[Part]]:
        """The worker's batches until each of ``units`` capture threads has ended: the overflow parts
        first, one by one; then the oldest part, with the oldest waiting part of each other unit (the
        parts that wait together go to the judge in one call, one per unit, so a single camera's
        parts are inspected one by one, as they come). Parts of a unit already in the batch that
        the scan passes are held, in order, for the next batches (at most the queue's size of them)."""
        ends, held = 0, collections.deque()
        while True:
            while self.overflow:
                yield [self.overflow.popleft()]
            if not held and ends >= units:
                return
            item = held.popleft() if held else self._q.get()
            if item is _END:
                ends += 1
                continue
            batch, seen = [item], {id(item.unit)}
            for other in list(held):  # the oldest held part of each other unit
                if len(batch) < units and id(other.unit) not in seen:
                    held.remove(other)
                    batch.append(other)
                    seen.add(id(other.unit))
            scanned = 0
            while len(batch) < units and scanned < self._q.maxsize:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                scanned += 1
                if more is _END:
                    ends += 1
                elif id(more.unit) in seen:
                    held.append(more)
                else:
                    batch.append(more)
                    seen.add(id(more.unit))
            yield batch
