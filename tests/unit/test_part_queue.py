"""The queue between the capture threads and the worker: what a full queue drops, and how parts that
wait together are batched (one per unit, in order)."""

from __future__ import annotations

import numpy as np

from edge_inspector.capture import BufferStrategy, PartFactory
from edge_inspector.envelope import Reason
from edge_inspector.part_queue import PartQueue
from edge_inspector.units import Counters, Part


class _Source:
    def __init__(self, strategy: BufferStrategy) -> None:
        self.buffer_strategy = strategy


class _Unit:
    def __init__(self, name: str, strategy: BufferStrategy = BufferStrategy.DROP_OLDEST) -> None:
        self.name = name
        self.source = _Source(strategy)
        self.parts = PartFactory(5.0)


def _part(unit: _Unit) -> Part:
    return Part(unit, (unit.parts.trigger(unit.name).frame(np.zeros((4, 4), np.uint8)),))


def test_a_full_queue_drops_the_oldest_live_part_as_an_overflow_no_read():
    counters = Counters()
    q = PartQueue(2, counters)
    live = _Unit("live")
    a, b, c = _part(live), _part(live), _part(live)
    for p in (a, b, c):
        q.put(p)
    assert counters.overflow == 1 and q.qsize() == 2
    (dropped,) = q.overflow
    assert dropped.part_id == a.part_id
    assert dropped.views[0].image is None and dropped.views[0].error_reason is Reason.OVERFLOW
    # the overflow NO-READ goes first, then the queued parts one by one (one unit)
    batches = q.batches(1)
    assert [p.part_id for p in next(batches)] == [a.part_id]
    assert [p.part_id for p in next(batches)] == [b.part_id]
    q.end()  # a blocking put: there is room now
    assert [[p.part_id for p in batch] for batch in batches] == [[c.part_id]]


def test_an_end_marker_is_never_dropped():
    counters = Counters()
    q = PartQueue(1, counters)
    live = _Unit("live")
    q.end()  # the queue is full of an end marker: the new part itself is the overflow
    first = _part(live)
    q.put(first)
    assert counters.overflow == 1 and [p.part_id for p in q.overflow] == [first.part_id]
    assert len(q.drain()) == 1 and q.qsize() == 0  # the end marker, still queued


def test_parts_waiting_together_go_one_per_unit_and_each_units_order_holds():
    q = PartQueue(8, Counters())
    top, side = _Unit("top"), _Unit("side")
    t1, t2, s1, t3, s2 = _part(top), _part(top), _part(side), _part(top), _part(side)
    for p in (t1, t2, s1, t3, s2):
        q.put(p)
    q.end()
    q.end()
    got = [[p.part_id for p in batch] for batch in q.batches(2)]
    assert got == [[t1.part_id, s1.part_id], [t2.part_id, s2.part_id], [t3.part_id]]
