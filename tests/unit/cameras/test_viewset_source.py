"""A view set's source: one part per trigger, a frame from each camera, a dropped camera's views."""

from __future__ import annotations

import threading

import numpy as np

from edge_inspector.capture.base import PartFactory, Source
from edge_inspector.capture.viewset import ViewSetSource
from edge_inspector.envelope import Reason


class Cam(Source):
    def __init__(self, name: str, fail_at: int | None = None, n: int = 100) -> None:
        self.name, self.fail_at, self.n = name, fail_at, n
        self.opened = self.closed = False

    def open(self):
        self.opened = True

    def close(self):
        self.closed = True

    def frames(self, parts, stop):
        for i in range(self.n):
            trig = parts.trigger(self.name)
            if i == self.fail_at:
                raise OSError("unplugged")
            yield trig.frame(np.full((4, 4), i, np.uint8), source=f"{self.name}:{i}")


def test_one_part_per_trigger_each_camera_a_view_and_a_dropped_camera_gives_offline_views():
    front, back = Cam("front"), Cam("back", fail_at=2)
    vs = ViewSetSource("board", [front, back])
    vs.open()
    assert front.opened and back.opened
    stop = threading.Event()
    it = vs.frames(PartFactory(1.0), stop)
    parts = [next(it) for _ in range(4)]
    for views in parts:
        assert [v.camera for v in views] == ["front", "back"]
        assert len({v.part_id for v in views}) == 1 and len({v.deadline_mono for v in views}) == 1
    assert len({views[0].part_id for views in parts}) == 4
    assert [v.readable for v in parts[1]] == [True, True]
    for views in parts[2:]:  # back dropped at its third grab: its view of every later part
        assert views[0].readable and views[1].error_reason is Reason.CAMERA_OFFLINE
        assert "back dropped" in views[1].error and "unplugged" in views[1].error
    h = vs.health()
    assert h["state"] == "degraded" and h["views"][1]["state"] == "dropped"
    vs.close()
    assert front.closed and back.closed


def test_the_set_ends_when_every_camera_has_ended():
    vs = ViewSetSource("board", [Cam("front", n=2), Cam("back", n=3)])
    got = list(vs.frames(PartFactory(1.0), threading.Event()))
    assert len(got) == 3  # the third part: front ended (offline view), back's last frame
    assert not got[2][0].readable and got[2][1].readable
    assert vs.health()["state"] == "offline"
