"""The feed never blocks the worker: a client that never reads loses its oldest events, counted;
the metrics count each decision by outcome and reason and observe each stage's time."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from edge_inspector.api.feed import Feed
from edge_inspector.api.metrics import Metrics
from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Inspection, Reason, Verdict, Vote
from edge_inspector.policy import Policy, PolicyConfig

PARTS = PartFactory(math.inf, run_tag="t")
POLICY = Policy(PolicyConfig())


def no_read() -> Inspection:
    frame = PARTS.trigger("cam").frame(np.zeros((4, 4), np.uint8))
    return Inspection(frame, POLICY.no_read(frame, Reason.UNREADABLE, "bad", {"total": 2.0, "regions": 1.0}))


def test_a_client_whose_loop_never_runs_keeps_only_the_newest_and_the_loss_is_counted():
    metrics = Metrics()
    feed = Feed(metrics, size=4)
    sub = feed.subscribe()  # never reads: a stuck client
    parts = [no_read() for _ in range(10)]
    for p in parts:
        feed.emit(p)
    assert [e["part_id"] for e in sub.events] == [p.decision.part_id for p in parts[-4:]]
    assert sub.dropped == 6 and metrics.feed_dropped._value.get() == 6
    got = asyncio.run(sub.next_batch(1.0))  # the client's loop, when it reads, gets the newest four
    assert [e["part_id"] for e in got] == [p.decision.part_id for p in parts[-4:]] and not sub.events
    feed.unsubscribe(sub)
    assert feed.clients == 0
    feed.emit(no_read())


def test_metrics_count_each_cameras_decisions_apart():
    metrics = Metrics()
    for camera, n in (("top", 2), ("bottom", 1)):
        for _ in range(n):
            frame = PARTS.trigger(camera).frame(np.zeros((4, 4), np.uint8))
            metrics.observe(Inspection(frame, POLICY.no_read(frame, Reason.UNREADABLE, "bad", {})))
    text = metrics.render().decode()
    for camera, n in (("top", 2), ("bottom", 1)):
        assert (f'edge_inspector_decisions_total{{camera="{camera}",outcome="NO-READ",'
                f'reason="unreadable_frame"}} {n}.0') in text


def test_metrics_count_decisions_stage_times_and_votes():
    metrics = Metrics()
    metrics.attach(lambda: {"queue_depth": 3, "outputs": [{"name": "mqtt", "state": "connected",
                                                           "pending": 7}],
                            "source": {"name": "cam", "state": "online"}})
    metrics.observe(no_read())
    frame = PARTS.trigger("cam").frame(np.zeros((4, 4), np.uint8))
    verdict = Verdict(True, 0.9, 0.9, "vlm", "m", votes=(Vote(True), Vote(None), Vote(False)))
    metrics.observe(Inspection(frame, POLICY.decide(frame, verdict, {"judge": 300.0}), verdict=verdict))
    text = metrics.render().decode()
    assert ('edge_inspector_decisions_total{camera="cam",outcome="NO-READ",reason="unreadable_frame"} 1.0'
            in text)
    assert 'edge_inspector_stage_seconds_count{stage="total"} 1.0' in text
    assert 'edge_inspector_stage_seconds_bucket{le="0.5",stage="judge"} 1.0' in text
    assert 'edge_inspector_judge_votes_total{answer="invalid"} 1.0' in text
    assert "edge_inspector_judge_invalid_votes_total 1.0" in text
    assert "edge_inspector_queue_depth 3.0" in text
    assert "edge_inspector_outbox_backlog 7.0" in text
    assert 'edge_inspector_camera_up{camera="cam",state="online"} 1.0' in text
    assert "edge_inspector_last_decision_age_seconds" in text
