"""The trigger bus: many producers, one consumer, nothing dropped."""

from __future__ import annotations

import threading
import time

import pytest

from edge_inspector.capture.triggers import TimerTrigger, TriggerBus


def test_events_come_out_in_order_with_their_origin_and_device_stamps() -> None:
    bus = TriggerBus()
    a = bus.fire("command")
    b = bus.part_present(mcu_ts=4242, seq=7, t_mono=a.t_mono + 1)
    assert bus.pending == 2 and bus.fired == 2
    assert bus.wait(0) == a
    got = bus.wait(0)
    assert got == b and got.t_mono == a.t_mono + 1
    assert got.meta() == {"trigger_origin": "bridge", "trigger_device_ts": 4242,
                          "trigger_device_seq": 7}
    assert bus.wait(0.01) is None


def test_concurrent_producers_lose_nothing() -> None:
    bus = TriggerBus()
    producers = [threading.Thread(target=lambda: [bus.fire("command") for _ in range(500)])
                 for _ in range(4)]
    got = []
    consumer = threading.Thread(target=lambda: [got.append(bus.wait(1)) for _ in range(2000)])
    consumer.start()
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    consumer.join(5)
    assert len(got) == 2000 and None not in got and bus.pending == 0


def test_close_wakes_the_consumer_delivers_what_was_fired_and_refuses_more() -> None:
    bus = TriggerBus()
    bus.fire()
    bus.close()
    assert bus.wait(5) is not None
    t0 = time.monotonic()
    assert bus.wait(5) is None and time.monotonic() - t0 < 1
    with pytest.raises(RuntimeError, match="cannot become a part"):
        bus.fire()


def test_timer_fires_at_its_rate_and_stops() -> None:
    bus = TriggerBus()
    timer = TimerTrigger(bus, rate_hz=100, count=10).start()
    t0 = time.monotonic()
    events = [bus.wait(30) for _ in range(10)]
    assert None not in events and {e.origin for e in events} == {"timer"}
    # no faster than the rate (nine periods between ten events); the upper bound only says it stops
    # being a timer at all, with room for a loaded machine
    assert 0.08 <= time.monotonic() - t0 < 30.0
    timer.stop()
    with pytest.raises(ValueError):
        TimerTrigger(bus, rate_hz=0)
