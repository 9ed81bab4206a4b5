"""OpenCV sources: a USB camera by index, an RTSP/HTTP stream, a video file.

Exactly one of ``device``, ``url`` and ``file`` is set.

- A *live* source (device, url) is read by a background thread that keeps the newest
  ``buffer_frames`` frames: when the buffer is full the oldest frame is dropped and counted
  (``dropped_frames``). After ``read_failures_before_reconnect`` failed reads it releases the
  capture and reopens it with exponential back-off; the state (online / reconnecting / offline) shows
  in :meth:`OpenCVSource.health` and in ``camera_state`` log events.
- A *video file* is a replay: frames are read when they are asked for, nothing is dropped.

Trigger modes (``trigger``):

- ``free_run``: every frame taken from the source makes one part (``rate_hz`` paces it).
- ``software``: each event on the :class:`~edge_inspector.capture.triggers.TriggerBus` makes one
  part: from a live source the first frame captured at or after the trigger, from a file the next
  frame. A trigger while a live source is down becomes a frame with ``Reason.CAMERA_OFFLINE``; a
  trigger after the end of a file (without ``loop``) becomes an unreadable frame.

Images are OpenCV's BGR ``uint8`` arrays.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

import cv2
import numpy as np
import structlog
from pydantic import Field, model_validator

from edge_inspector.capture.base import BufferStrategy, PartFactory, Trigger
from edge_inspector.capture.camera import CameraSource
from edge_inspector.capture.triggers import CameraState, TriggerBus, TriggerEvent
from edge_inspector.config_base import ConfigModel, ConfigPath
from edge_inspector.envelope import Frame
from edge_inspector.errors import StartupError

log = structlog.get_logger(__name__)


class OpenCVSourceConfig(ConfigModel):
    """A camera or video read through OpenCV's VideoCapture."""

    kind: Literal["opencv"] = Field("opencv", description="Source type.")
    name: str = Field("cam0", min_length=1, description="The camera's name in logs, status and "
                      "part records.")
    device: int | None = Field(None, ge=0, description="A USB (V4L2) camera by index: 0 is "
                               "/dev/video0.")
    url: str | None = Field(None, description="A network stream: rtsp://, http(s):// (MJPEG).")
    file: ConfigPath | None = Field(None, description="A video file, replayed frame by frame.")
    trigger: Literal["free_run", "software"] = Field(
        "free_run", description="free_run: every frame is a part; software: the daemon's trigger "
        "input takes one frame per trigger.")
    rate_hz: float | None = Field(None, gt=0, description="Free-run: take at most this many parts "
                                  "per second. Null: every frame (live) / as fast as consumed "
                                  "(file).")
    loop: bool = Field(False, description="Video file: start again at the end instead of stopping.")
    buffer: BufferStrategy | None = Field(None, description="When the inspection queue is full: "
                                          "drop_oldest or wait. Null: drop_oldest for a live "
                                          "source, wait for a file.")
    buffer_frames: int = Field(1, ge=1, le=64, description="Live: frames kept by the reader; the "
                               "oldest is dropped and counted when full.")
    width: int | None = Field(None, gt=0, description="USB: requested frame width.")
    height: int | None = Field(None, gt=0, description="USB: requested frame height.")
    fps: float | None = Field(None, gt=0, description="USB: requested frame rate.")
    grab_timeout_s: float = Field(1.0, gt=0, description="Software trigger on a live source: how "
                                  "long to wait for a frame captured after the trigger.")
    open_timeout_s: float = Field(5.0, gt=0, description="Network streams: open timeout.")
    read_failures_before_reconnect: int = Field(5, ge=1, description="Live: consecutive failed "
                                                "reads that count as a lost camera.")
    reconnect_backoff_s: float = Field(0.5, gt=0, description="First wait before reopening; "
                                       "doubles after each failed attempt.")
    reconnect_max_s: float = Field(10.0, gt=0, description="Longest wait between reopen attempts.")
    offline_after_attempts: int = Field(3, ge=1, description="Failed reopen attempts after which "
                                        "the state goes to offline (it keeps retrying).")

    @model_validator(mode="after")
    def _one_input(self) -> OpenCVSourceConfig:
        if sum(x is not None for x in (self.device, self.url, self.file)) != 1:
            raise ValueError("give exactly one of device, url, file")
        return self

    @property
    def live(self) -> bool:
        return self.file is None


class OpenCVSource(CameraSource):
    """A USB camera, a stream or a video file. ``open()`` raises StartupError if it cannot open."""

    kind = "opencv"
    cfg: OpenCVSourceConfig

    def __init__(self, cfg: OpenCVSourceConfig, triggers: TriggerBus | None = None) -> None:
        super().__init__(cfg, triggers)
        self.buffer_strategy = cfg.buffer or (BufferStrategy.DROP_OLDEST if cfg.live
                                              else BufferStrategy.WAIT)
        self._cap: Any = None
        self._buf: deque[tuple[np.ndarray, float, int]] = deque()  # (image, t_mono, frame index)
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._index = 0  # frames read so far (file position / live frame counter)
        self._eof = False

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        cfg = self.cfg
        if cfg.file is not None and not cfg.file.is_file():
            raise StartupError(f"camera {self.name!r}: video file {cfg.file} does not exist")
        self._cap = self._open_capture()
        if self._cap is None:
            raise StartupError(f"camera {self.name!r}: OpenCV cannot open {self._what()}")
        self._closing.clear()
        self._buf.clear()
        self._index, self._eof = 0, False
        self._set_state(CameraState.ONLINE, "opened")
        if cfg.live:
            self._reader = threading.Thread(target=self._read_loop, name=f"reader-{self.name}",
                                            daemon=True)
            self._reader.start()

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._set_state(CameraState.OFFLINE, "closed")

    def _device_label(self) -> str:
        return self._what()

    def _offline_source(self) -> str:
        return self._what()

    # -- frames ----------------------------------------------------------------------------------

    def _streaming(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        period = 1.0 / self.cfg.rate_hz if self.cfg.rate_hz else 0.0
        next_t = time.monotonic()
        while not stop.is_set():
            if period:
                if stop.wait(max(0.0, next_t - time.monotonic())):
                    return
                next_t = max(next_t + period, time.monotonic() - period)
            got = self._next_live(stop, since=None) if self.cfg.live else self._next_file()
            if got is None:
                if self.cfg.live:
                    continue
                return  # end of the file
            image, t_mono, index = got
            trig = parts.trigger(self.name, t_mono=t_mono)
            yield trig.frame(image, source=f"{self._what()}#{index}",
                             meta={"camera_frame_id": index, "grab_mono": t_mono,
                                   "trigger_origin": "free_run"})

    def _grab(self, trig: Trigger, event: TriggerEvent, stop: threading.Event) -> Frame:
        """Software trigger: the next file frame, or the first live frame at/after the trigger."""
        meta = event.meta()
        if not self.cfg.live:
            got = self._next_file()
            if got is None:
                return trig.frame(None, source=self._what(), meta=meta,
                                  error=f"end of video file {self.cfg.file}")
        else:
            if self._state is not CameraState.ONLINE:
                return self._offline(trig, event, f"camera {self.name} is {self._state} at the "
                                     "trigger")
            got = self._next_live(stop, since=event.t_mono, timeout=self.cfg.grab_timeout_s)
            if got is None:
                if self._state is not CameraState.ONLINE:
                    return self._offline(trig, event, f"camera {self.name} was lost during the "
                                         "grab")
                self.stats["grab_timeouts"] += 1
                return trig.frame(None, source=self._what(), meta=meta, error="grab timeout: "
                                  f"no frame within {self.cfg.grab_timeout_s} s of the trigger")
        image, t_mono, index = got
        return trig.frame(image, source=f"{self._what()}#{index}",
                          meta={**meta, "camera_frame_id": index, "grab_mono": t_mono})

    # -- file ------------------------------------------------------------------------------------

    def _next_file(self) -> tuple[np.ndarray, float, int] | None:
        if self._cap is None or self._eof:
            return None
        ok, image = self._cap.read()
        if not ok and self.cfg.loop and self._index:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok:
            self._eof = True
            log.info("video_file_end", camera=self.name, file=str(self.cfg.file), frames=self._index)
            return None
        self._index += 1
        self.stats["frames"] += 1
        return image, time.monotonic(), self._index - 1

    # -- live ------------------------------------------------------------------------------------

    def _next_live(self, stop: threading.Event, since: float | None,
                   timeout: float | None = None) -> tuple[np.ndarray, float, int] | None:
        """The oldest buffered frame (free-run), or the first captured at/after ``since``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not stop.is_set() and not self._closing.is_set():
                while self._buf and since is not None and self._buf[0][1] < since:
                    self._buf.popleft()  # captured before the trigger: not this part
                if self._buf:
                    return self._buf.popleft()
                if since is not None and self._state is not CameraState.ONLINE:
                    return None
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    return None
                self._cond.wait(left)
        return None

    def _read_loop(self) -> None:
        cap, failures = self._cap, 0
        while not self._closing.is_set():
            if cap is None:
                got = self._reopen(self._open_capture, lambda error, next_in_s: {"target": self._what()})
                if got is None:
                    break
                cap, attempts = got
                self._cap, failures = cap, 0
                self._reopened(attempts)
            ok, image = cap.read()
            if not ok:
                failures += 1
                if failures >= self.cfg.read_failures_before_reconnect:
                    cap.release()
                    cap = self._cap = None
                    self._set_state(CameraState.RECONNECTING, f"{failures} consecutive failed reads")
                    with self._cond:
                        self._cond.notify_all()
                else:
                    self._closing.wait(0.01)
                continue
            failures = 0
            with self._cond:
                if len(self._buf) >= self.cfg.buffer_frames:
                    self._buf.popleft()
                    if self.cfg.trigger == "free_run":
                        self.stats["dropped_frames"] += 1
                self._buf.append((image, time.monotonic(), self._index))
                self._index += 1
                self.stats["frames"] += 1
                self._cond.notify_all()
        if cap is not None:
            cap.release()
            self._cap = None

    def _open_capture(self) -> Any:
        cfg = self.cfg
        if cfg.device is not None:
            cap = cv2.VideoCapture(cfg.device)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width),
                                (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height), (cv2.CAP_PROP_FPS, cfg.fps)):
                if value is not None and cap.isOpened():
                    cap.set(prop, value)
        elif cfg.url is not None:
            ms = int(cfg.open_timeout_s * 1000)
            cap = cv2.VideoCapture(cfg.url, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(str(cfg.file))
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _what(self) -> str:
        c = self.cfg
        return f"usb:{c.device}" if c.device is not None else (c.url or f"file:{c.file}")



def build(cfg: OpenCVSourceConfig, triggers: TriggerBus | None = None) -> OpenCVSource:
    """The source for ``cfg``. Call ``open()`` on it to acquire the device."""
    return OpenCVSource(cfg, triggers)
