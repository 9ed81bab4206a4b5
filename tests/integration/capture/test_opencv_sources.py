"""OpenCV sources against a video file the test writes and an MJPEG stream the test serves."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.capture.base import BufferStrategy, PartFactory
from edge_inspector.capture.discovery import grab_one, resolve_camera
from edge_inspector.capture.opencv import OpenCVSource, OpenCVSourceConfig, build
from edge_inspector.capture.triggers import CameraState
from edge_inspector.envelope import Reason
from edge_inspector.errors import StartupError
from tests.helpers import wait_until


def level(image: np.ndarray) -> int:
    """The frame's index, written as a flat grey level of 20 * index (robust to JPEG)."""
    return round(float(image.mean()) / 20)


def write_video(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((120, 160, 3), 20 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "line.avi", 8)


class MJPEGServer:
    """A live camera stand-in: multipart MJPEG over HTTP at ``fps``; stop() and start() again
    on the same port to unplug and replug it."""

    def __init__(self, fps: float = 50.0) -> None:
        self.fps, self.port, self.sent = fps, 0, 0
        self._srv: socketserver.TCPServer | None = None
        self._halt = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MJPEGServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not owner._halt.is_set():
                        ok, jpg = cv2.imencode(".jpg", np.full((120, 160, 3), 100, np.uint8))
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         b"%d\r\n\r\n%s\r\n" % (len(jpg), jpg.tobytes()))
                        owner.sent += 1
                        time.sleep(1 / owner.fps)
                except OSError:
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._halt.clear()
        self._srv = Server(("127.0.0.1", self.port), Handler)
        self.port = self._srv.server_address[1]
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()


@pytest.fixture
def stream() -> Iterator[MJPEGServer]:
    server = MJPEGServer().start()
    yield server
    server.stop()


def opened(**kw: object) -> OpenCVSource:
    source = build(OpenCVSourceConfig(**kw))
    source.open()
    return source


# -- video file -------------------------------------------------------------------------------------

def test_video_file_free_run_replays_every_frame_in_order(video: Path, run_source) -> None:
    src = opened(file=video)
    assert src.buffer_strategy is BufferStrategy.WAIT
    runner = run_source(src)
    runner.until(lambda: not runner._thread.is_alive(), "the end of the file")
    frames = runner.finish()
    assert [level(f.image) for f in frames] == list(range(8))
    assert len({f.part_id for f in frames}) == 8
    assert frames[2].source == f"file:{video}#2" and frames[2].meta["camera_frame_id"] == 2


def test_video_file_software_trigger_one_frame_per_trigger_also_past_the_end(video: Path,
                                                                            run_source) -> None:
    src = opened(file=video, trigger="software")
    runner = run_source(src)
    for _ in range(10):
        src.triggers.fire("command")
    runner.wait_for(10)
    frames = runner.finish_one_part_per_trigger(10)
    assert [level(f.image) for f in frames[:8]] == list(range(8))
    assert all(f.image is None and f.error_reason is Reason.UNREADABLE
               and "end of video file" in f.error for f in frames[8:])


def test_video_file_loop_and_rate(video: Path, run_source) -> None:
    src = opened(file=video, loop=True, rate_hz=200)
    t0 = time.monotonic()  # before the source starts: frame k is read no sooner than k periods after
    runner = run_source(src)
    frames = runner.wait_for(12)
    assert frames[-1].trigger_mono - t0 >= 11 / 200
    assert [level(f.image) for f in frames] == [*range(8), *range(4)]
    runner.finish()


# -- live stream --------------------------------------------------------------------------------------

def test_live_stream_free_run_drops_the_oldest_and_counts(stream: MJPEGServer) -> None:
    src = opened(url=stream.url)
    assert src.buffer_strategy is BufferStrategy.DROP_OLDEST
    stop = threading.Event()
    frames = src.frames(PartFactory(1.0, run_tag="t"), stop)
    taken = [next(frames), next(frames)]
    # the consumer is busy: frames keep arriving, the reader keeps only the newest and counts
    # the others (waited for, not slept: a loaded machine delivers fewer frames per second). The
    # reader may have dropped frames already, before the consumer took its first two: five more
    # are counted from here
    before = src.health().get("dropped_frames", 0)
    assert wait_until(lambda: src.health().get("dropped_frames", 0) >= before + 5, 60), src.health()
    taken.append(next(frames))
    stop.set()
    src.close()  # stops the reader: the counters hold still
    health = src.health()
    assert all(f.readable for f in taken) and health["dropped_frames"] >= 5
    assert health["frames"] == len(taken) + health["dropped_frames"] + len(src._buf)
    assert taken[2].meta["camera_frame_id"] > taken[1].meta["camera_frame_id"] + 5


def test_live_stream_trigger_takes_a_frame_captured_after_it(stream: MJPEGServer,
                                                             run_source) -> None:
    src = opened(url=stream.url, trigger="software")
    runner = run_source(src)
    events = [src.triggers.fire("bridge") for _ in range(3)]
    frames = runner.wait_for(3)
    assert all(f.readable and f.meta["grab_mono"] >= e.t_mono for f, e in zip(frames, events))
    runner.finish_one_part_per_trigger(3)


def test_live_stream_lost_then_back_no_part_lost(stream: MJPEGServer, run_source) -> None:
    src = opened(url=stream.url, trigger="software", read_failures_before_reconnect=2,
                 reconnect_backoff_s=0.1, reconnect_max_s=0.2, offline_after_attempts=2,
                 open_timeout_s=1.0)
    runner = run_source(src)
    src.triggers.fire()
    runner.wait_for(1)
    stream.stop()  # unplugged
    runner.until(lambda: src.state is CameraState.OFFLINE, "offline")
    for _ in range(3):
        src.triggers.fire()
    runner.wait_for(4)
    stream.start()  # plugged back, same port
    runner.until(lambda: src.state is CameraState.ONLINE, "back online")
    src.triggers.fire()
    frames = runner.wait_for(5)
    runner.finish_one_part_per_trigger(5)
    assert frames[0].readable and frames[4].readable
    assert all(f.error_reason is Reason.CAMERA_OFFLINE for f in frames[1:4])
    assert src.health()["reconnects"] == 1 and src.health()["offline_triggers"] == 3


def test_grab_one_from_stream_and_file(stream: MJPEGServer, video: Path) -> None:
    assert grab_one(resolve_camera(stream.url)).image.shape == (120, 160, 3)
    assert level(grab_one(resolve_camera(str(video))).image) == 0


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kw", "message"), [
    ({"file": "/nonexistent/line.avi"}, "video file /nonexistent/line.avi does not exist"),
    ({"url": "http://127.0.0.1:1/stream.mjpg"}, "OpenCV cannot open http://127.0.0.1:1/"),
    ({"device": 57}, "OpenCV cannot open usb:57"),
])
def test_a_source_that_cannot_open_is_a_clear_startup_error(kw: dict, message: str) -> None:
    with pytest.raises(StartupError, match=f"^camera 'cam0': {message}"):
        opened(**kw)


def test_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "notes.avi"
    bad.write_text("not a video")
    with pytest.raises(StartupError, match="OpenCV cannot open file:"):
        opened(file=bad)
