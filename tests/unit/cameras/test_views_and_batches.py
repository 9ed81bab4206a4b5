"""A view set's decision from its views, and parts that wait together going to the judge in one call."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from edge_inspector.capture.base import BufferStrategy, PartFactory, Source
from edge_inspector.config import load_config
from edge_inspector.envelope import Action, Inspection, MapSummary, Outcome, Reason, Regions, Verdict
from edge_inspector.errors import JudgeError, JudgeTimeout
from edge_inspector.judge.base import Judge
from edge_inspector.outputs import Outputs
from edge_inspector.outputs.base import Output
from edge_inspector.pipeline import GuardedJudge, Inspector, inspect_batch
from edge_inspector.policy import Policy, PolicyConfig
from edge_inspector.policy.views import combine_views
from edge_inspector.regions.base import RegionFinder
from edge_inspector.stages import Stages, StationStages
from edge_inspector.station import HookedPartFactory, Station, Unit
from edge_inspector.versions import Versions
from tests.helpers import wait_until

POLICY = Policy(PolicyConfig())


class Scored(RegionFinder):
    """Score from the frame's meta: >= 1 is a box (defective for the anomaly-like judge below)."""

    fingerprint = "scored"

    def find(self, frame):
        s = float(frame.meta.get("score", 0.1))
        return Regions(score=s, boxes=(), summary=MapSummary(s, 0, 0, 0), model="scored")


def verdict(p: float) -> Verdict:
    return Verdict(defective=p >= 0.5, p_defective=p, confidence=max(p, 1 - p), decided_by="vlm", model="rec")


class Recording(Judge):
    """A judge with a batch call: records each call's parts; P(defective) is the regions score."""

    fingerprint = "rec"

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.calls: list[list[str]] = []  # each call: the cameras of its parts
        self.single = 0
        self.hold = hold  # the first call waits for it

    def judge(self, frame, regions, deadline_mono):
        self.single += 1
        self.calls.append([frame.camera])
        if self.hold is not None and len(self.calls) == 1:
            self.hold.wait(10)
        return verdict(min(regions.score, 0.99))

    def judge_many(self, items):
        self.calls.append([f.camera for f, _ in items])
        if self.hold is not None and len(self.calls) == 1:
            self.hold.wait(10)
        return [verdict(min(r.score, 0.99)) for _, r in items]


def view(camera: str, outcome: Outcome, reason: Reason, action: Action, part="p-1", late=False,
         total=10.0) -> Inspection:
    frame = PartFactory(1.0).trigger(camera).frame(np.zeros((4, 4), np.uint8))
    frame = replace(frame, part_id=part)
    from edge_inspector.envelope import Decision

    d = Decision(part, outcome, action, reason, f"{camera} said so", {"total": total}, time.monotonic(), late)
    return Inspection(frame, d)


PASS = (Outcome.PASS, Reason.OK, Action.PASS)
REJECT = (Outcome.REJECT, Reason.DEFECT, Action.REJECT)
NOREAD_REJECT = (Outcome.NO_READ, Reason.CAMERA_OFFLINE, Action.REJECT)
NOREAD_PASS = (Outcome.NO_READ, Reason.LOW_CONFIDENCE, Action.PASS)


@pytest.mark.parametrize(("views", "outcome", "reason", "action", "decider"), [
    ([PASS, PASS], Outcome.PASS, Reason.OK, Action.PASS, "top"),
    ([PASS, REJECT], Outcome.REJECT, Reason.DEFECT, Action.REJECT, "bottom"),
    ([NOREAD_REJECT, REJECT], Outcome.REJECT, Reason.DEFECT, Action.REJECT, "bottom"),  # defective wins
    ([PASS, NOREAD_REJECT], Outcome.NO_READ, Reason.CAMERA_OFFLINE, Action.REJECT, "bottom"),
    ([NOREAD_PASS, PASS], Outcome.NO_READ, Reason.LOW_CONFIDENCE, Action.PASS, "top"),  # its fail-safe
    ([NOREAD_PASS, NOREAD_REJECT], Outcome.NO_READ, Reason.LOW_CONFIDENCE, Action.REJECT, "top"),  # gate shut
])
def test_a_view_sets_decision_combines_its_views(views, outcome, reason, action, decider):
    got = combine_views("board", [view(cam, *v) for cam, v in zip(("top", "bottom"), views, strict=True)])
    d = got.decision
    assert (d.outcome, d.reason, d.action) == (outcome, reason, action)
    assert got.frame.camera == "board" and got.frame.meta["view"] == decider and d.part_id == "p-1"
    assert d.detail.startswith(f"view {decider}:")
    j = got.to_json()
    assert j["camera"] == "board" and [v["camera"] for v in j["views"]] == ["top", "bottom"]


def test_a_view_set_part_is_late_when_any_view_was_and_takes_the_slowest_views_time():
    got = combine_views("board", [view("top", *PASS, total=5.0), view("bottom", *PASS, late=True, total=40.0)])
    assert got.decision.late and got.decision.timings_ms["total"] == 40.0


def parts(*cameras, deadline_s=5.0, score=0.1):
    f = PartFactory(deadline_s)
    return [replace(f.trigger(c).frame(np.zeros((4, 4), np.uint8)), meta={"score": score}) for c in cameras]


def test_two_parts_waiting_together_go_to_the_judge_in_one_call():
    judge = Recording()
    shared = GuardedJudge(judge, 0.01)
    top, bottom = Inspector(Scored(), shared, POLICY), Inspector(Scored(), shared, POLICY)
    a, b = parts("top", "bottom")
    out = inspect_batch([(top, a), (bottom, replace(b, meta={"score": 0.9}))], shared)
    assert judge.calls == [["top", "bottom"]] and judge.single == 0 and shared.calls == 1
    assert [i.decision.outcome for i in out] == [Outcome.PASS, Outcome.REJECT]
    assert [i.frame.camera for i in out] == ["top", "bottom"]
    top.close(), bottom.close()  # a shared judge is its owner's to close
    assert shared._thread.is_alive()
    shared.close()


def test_a_judge_without_a_batch_call_falls_back_to_one_call_per_part_each_failing_alone():
    class OneByOne(Judge):
        fingerprint = "one"
        seen: list = []

        def judge(self, frame, regions, deadline_mono):
            self.seen.append(frame.camera)
            if frame.camera == "bottom":
                raise JudgeError("model crashed on this one")
            return verdict(0.1)

    shared = GuardedJudge(OneByOne(), 0.01)
    a, b, c = parts("top", "bottom", "side")
    r = Scored().find(a)
    results = shared.batch([(a, r), (b, r), (c, r)])
    assert OneByOne.seen == ["top", "bottom", "side"]
    assert isinstance(results[0], Verdict) and isinstance(results[1], JudgeError) and isinstance(results[2], Verdict)
    shared.close()


def test_in_a_batch_a_part_whose_deadline_passes_first_times_out_and_the_other_gets_its_verdict():
    release = threading.Event()

    class Slow(Recording):
        def judge_many(self, items):
            release.wait(10)
            return super().judge_many(items)

    shared = GuardedJudge(Slow(), 0.0)
    soon, later = parts("top", deadline_s=0.05)[0], parts("bottom", deadline_s=30.0)[0]
    threading.Timer(0.3, release.set).start()
    r = Scored().find(soon)
    results = shared.batch([(later, r), (soon, r)])
    assert isinstance(results[1], JudgeTimeout) and isinstance(results[0], Verdict)
    shared.close()


class Burst(Source):
    """``n`` parts at once, without pacing (a live camera)."""

    buffer_strategy = BufferStrategy.DROP_OLDEST

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def frames(self, parts, stop):
        for _ in range(self.n):
            yield parts.trigger(self.name).frame(np.zeros((4, 4), np.uint8), meta={"score": 0.1})


class Sink(Output):
    name = "sink"

    def __init__(self):
        self.got: list[Inspection] = []

    def emit(self, inspection):
        self.got.append(inspection)


def test_the_station_batches_the_oldest_waiting_part_of_each_camera_and_decides_every_trigger():
    hold = threading.Event()
    judge = Recording(hold)
    cfg = load_config(None, ["cameras=[{name: top, capture: {kind: demo}}, {name: bottom, capture: {kind: demo}}]",
                             "pipeline.queue_size=64"])
    shared = GuardedJudge(judge, 0.01)
    versions = Versions("s", "m", "c")
    cams = {n: Stages(c, Inspector(Scored(), shared, Policy(c.policy)), versions)
            for n, c in cfg.camera_configs().items()}
    stages = StationStages(cfg, cams, shared, versions)
    units = [Unit(n, Burst(n, 4), HookedPartFactory(5.0), None, (n,)) for n in ("top", "bottom")]
    sink = Sink()
    station = Station(stages, None, Outputs([sink]), units=units)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    # the first call holds the judge until every other part waits in the queue
    assert wait_until(lambda: judge.calls, 10)
    first = len(judge.calls[0])  # 1 or 2: whether the other camera's first part was there yet
    # every other part waits (in the queue, or held by the worker's scan): both sources have ended
    assert wait_until(lambda: all(u.thread and not u.thread.is_alive() for u in station.units), 10)
    hold.set()
    runner.join(30)
    assert not runner.is_alive()
    assert sorted(i.frame.camera for i in sink.got) == ["bottom"] * 4 + ["top"] * 4  # every trigger decided
    assert all(len(call) == len(set(call)) for call in judge.calls)  # one part per camera per call
    sizes = [len(call) for call in judge.calls]
    assert sizes == ([2, 2, 2, 2] if first == 2 else [1, 2, 2, 2, 1]), sizes  # waiting together: one call
    assert station.counters.triggers == station.counters.decisions == 8
    assert {u.name: u.decided for u in station.units} == {"top": 4, "bottom": 4}


class BusCamera(Source):
    """A software-triggered camera on its unit's bus that drops (raises) at its ``fail_at``-th grab."""

    buffer_strategy = BufferStrategy.DROP_OLDEST

    def __init__(self, name: str, triggers, fail_at: int) -> None:
        self.name, self.triggers, self.fail_at = name, triggers, fail_at

    def frames(self, parts, stop):
        n = 0
        while not stop.is_set():
            event = self.triggers.wait(0.05)
            if event is None:
                continue
            trig = parts.trigger(self.name, t_mono=event.t_mono)
            n += 1
            if n == self.fail_at:
                raise OSError("cable pulled")
            yield trig.frame(np.zeros((4, 4), np.uint8), meta={"score": 0.1})


def test_a_dropped_camera_no_reads_its_part_in_hand_and_every_later_trigger_the_other_goes_on():
    from edge_inspector.capture.triggers import TriggerBus

    cfg = load_config(None, ["cameras=[{name: top, capture: {kind: demo}}, {name: lane, capture: {kind: demo}}]"])
    shared = GuardedJudge(Recording(), 0.01)
    versions = Versions("s", "m", "c")
    cams = {n: Stages(c, Inspector(Scored(), shared, Policy(c.policy)), versions)
            for n, c in cfg.camera_configs().items()}
    bus = TriggerBus()
    units = [Unit("top", Burst("top", 5), HookedPartFactory(5.0), None, ("top",)),
             Unit("lane", BusCamera("lane", bus, fail_at=2), HookedPartFactory(5.0), bus, ("lane",))]
    sink = Sink()
    station = Station(StationStages(cfg, cams, shared, versions), None, Outputs([sink]), units=units)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        for _ in range(2):
            bus.fire("plc")
        assert wait_until(lambda: units[1].failure is not None, 10)
        for _ in range(3):  # the PLC keeps triggering the dropped camera's lane
            bus.fire("plc")
        assert wait_until(lambda: units[1].decided == 5 and units[0].decided == 5, 10)
    finally:
        station.request_stop("test")
        runner.join(30)
    lane = [i.decision for i in sink.got if i.frame.camera == "lane"]
    assert [d.outcome for d in lane] == [Outcome.PASS] + [Outcome.NO_READ] * 4
    assert all(d.reason is Reason.CAMERA_OFFLINE and "cable pulled" in d.detail for d in lane[1:])
    top = [i.decision for i in sink.got if i.frame.camera == "top"]
    assert len(top) == 5 and all(d.outcome is Outcome.PASS for d in top)
    assert station.counters.triggers == station.counters.decisions == 10


def test_a_live_cameras_overflow_never_drops_a_paced_replays_part():
    from edge_inspector.station import Part

    cfg = load_config(None, ["cameras=[{name: replay, capture: {kind: demo}}, {name: live, capture: {kind: demo}}]",
                             "pipeline.queue_size=2"])
    shared = GuardedJudge(Recording(), 0.01)
    versions = Versions("s", "m", "c")
    cams = {n: Stages(c, Inspector(Scored(), shared, Policy(c.policy)), versions)
            for n, c in cfg.camera_configs().items()}
    replay_src = Burst("replay", 0)
    replay_src.buffer_strategy = BufferStrategy.WAIT
    replay = Unit("replay", replay_src, HookedPartFactory(5.0), None, ("replay",))
    live = Unit("live", Burst("live", 0), HookedPartFactory(5.0), None, ("live",))
    station = Station(StationStages(cfg, cams, shared, versions), None, Outputs([Sink()]), units=[replay, live])

    def part(unit):
        return Part(unit, (unit.parts.trigger(unit.name).frame(np.zeros((4, 4), np.uint8)),))

    first_replay, first_live = part(replay), part(live)
    station.queue.put(first_replay)
    station.queue.put(first_live)
    station.queue.put(part(live))  # full: the live camera's oldest goes, the replay's stays
    assert [p.part_id for p in station.queue.overflow] == [first_live.part_id]
    station.queue.put(part(live))
    queued = station.queue.drain()
    assert first_replay in queued and station.counters.overflow == 2
    shared.close()
