"""Shared helpers for the capture integration tests: run a source in a consumer thread, check that
every trigger made exactly one part."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from edge_inspector.capture.base import PartFactory, Source
from edge_inspector.envelope import Frame


class Runner:
    """Iterates ``source.frames`` in a thread, as the daemon's capture worker does."""

    def __init__(self, source: Source, deadline_s: float = 5.0) -> None:
        self.source = source
        self.frames: list[Frame] = []
        self.stop = threading.Event()
        self.parts = PartFactory(deadline_s, run_tag="test")
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-consumer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self.source.frames(self.parts, self.stop):
                with self._cond:
                    self.frames.append(frame)
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by wait_for / finish
            self._error = exc

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Frame]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.frames) >= n or self._error, timeout)
        if self._error:
            raise self._error
        assert ok, f"got {len(self.frames)} frames, expected {n}"
        return self.frames[:n]

    def until(self, predicate: Callable[[], bool], what: str = "", timeout: float = 10.0) -> None:
        wait_until(predicate, timeout, what)

    def finish_one_part_per_trigger(self, triggers: int) -> list[Frame]:
        """Stop, then check the invariant: one frame, with its own part id, per trigger."""
        frames = self.finish()
        assert_one_part_per_trigger(frames, triggers)
        return frames

    def finish(self, timeout: float = 10.0) -> list[Frame]:
        self.stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "frames() did not stop"
        if self._error:
            raise self._error
        return self.frames


def assert_one_part_per_trigger(frames: list[Frame], triggers: int) -> None:
    """Invariant: the count of triggers equals the count of frames, one distinct part id each."""
    assert len(frames) == triggers, f"{triggers} triggers but {len(frames)} frames"
    ids = [f.part_id for f in frames]
    assert len(set(ids)) == len(ids), "a part id was reused"
    assert [f.seq for f in frames] == sorted(f.seq for f in frames)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what or predicate}"
        time.sleep(0.01)


@pytest.fixture
def run_source() -> Iterator[Callable[..., Runner]]:
    runners: list[Runner] = []

    def start(source: Source, **kwargs: float) -> Runner:
        runners.append(Runner(source, **kwargs))
        return runners[-1]

    yield start
    for r in runners:
        r.stop.set()
        r.source.close()

