"""A Basler camera through pypylon: configure from the config, trigger, grab, reconnect.

Trigger modes (``trigger``):

- ``software``: each event on the :class:`~edge_inspector.capture.triggers.TriggerBus` (the bridge's
  part-present, a command, a timer) makes one part; the source fires the camera's software trigger and
  waits for that frame. While the camera is down an event becomes a frame with ``image=None`` and
  ``Reason.CAMERA_OFFLINE`` at once, so the part gets its NO-READ before its deadline.
- ``hardware``: the camera is triggered by a line (``trigger_line``, ``trigger_activation``); each
  grabbed frame makes one part. A trigger while the camera is down is invisible to the box: the
  bridge's deadline fail-safe covers that part.
- ``free_run``: the camera runs at ``frame_rate_hz``; each frame makes one part.

Reconnect: on device removal (pylon's configuration event, or a closed/destroyed device) or after
``timeouts_before_reconnect`` consecutive grab timeouts, the camera is closed and a background thread
reopens it with exponential back-off and reapplies every setting. The state (online / reconnecting /
offline) shows in :meth:`BaslerSource.health` and in ``camera_state`` log events.

Images leave the source as 8-bit numpy arrays: mono formats as ``(H, W)`` ``Mono8``, colour and Bayer
formats as ``(H, W, 3)`` BGR (OpenCV order), converted by pylon's image format converter.

pypylon is imported lazily: importing this module does not need it. Device lookup, GenICam feature
setting and release are in :mod:`edge_inspector.capture.basler_pylon`; state, health, the trigger
dispatch and the reopen loop in :class:`edge_inspector.capture.camera.CameraSource`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import structlog
from pydantic import Field, model_validator

from edge_inspector.capture.base import BufferStrategy, PartFactory, Trigger
from edge_inspector.capture.basler_pylon import (
    FeatureValue,
    RemovalHandler,
    configure,
    describe,
    find_device,
    gone,
    interface_name,
    load_pylon,
    release,
)
from edge_inspector.capture.camera import CameraSource
from edge_inspector.capture.triggers import CameraState, TriggerBus, TriggerEvent
from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Frame
from edge_inspector.errors import StartupError

__all__ = ["BaslerSource", "BaslerSourceConfig", "CameraState", "FeatureValue", "build",
           "find_device", "interface_name"]

log = structlog.get_logger(__name__)


class BaslerSourceConfig(ConfigModel):
    """A Basler camera (GigE, USB3, or pylon's camera emulator) opened through pypylon."""

    kind: Literal["basler"] = Field("basler", description="Source type.")
    name: str = Field("cam0", min_length=1, description="The camera's name in logs, status and "
                      "part records.")
    serial: str | None = Field(None, description="Open the camera with this serial number.")
    user_name: str | None = Field(None, description="Open the camera with this user-defined name "
                                  "(DeviceUserID). Without serial and user_name: the first found.")
    pixel_format: str | None = Field("Mono8", description="PixelFormat, e.g. Mono8, BGR8Packed, "
                                     "BayerRG8. Null leaves the camera's setting.")
    exposure_us: float | None = Field(None, gt=0, description="ExposureTime in microseconds "
                                      "(ExposureAuto is switched off). Null leaves it.")
    gain_db: float | None = Field(None, description="Gain in dB (GainAuto is switched off).")
    width: int | None = Field(None, gt=0, description="Region of interest: Width in pixels.")
    height: int | None = Field(None, gt=0, description="Region of interest: Height in pixels.")
    offset_x: int | None = Field(None, ge=0, description="Region of interest: OffsetX in pixels.")
    offset_y: int | None = Field(None, ge=0, description="Region of interest: OffsetY in pixels.")
    packet_size: int | None = Field(None, gt=0, description="GigE: GevSCPSPacketSize in bytes "
                                    "(jumbo frames: 8192 or more).")
    inter_packet_delay: int | None = Field(None, ge=0, description="GigE: GevSCPD, the delay "
                                           "between packets in timestamp ticks.")
    trigger: Literal["software", "hardware", "free_run"] = Field(
        "software", description="software: the daemon's trigger input fires the camera; hardware: "
        "a line triggers it; free_run: the camera runs at frame_rate_hz.")
    trigger_line: str = Field("Line1", description="Hardware trigger: TriggerSource line.")
    trigger_activation: Literal["RisingEdge", "FallingEdge", "AnyEdge"] = Field(
        "RisingEdge", description="Hardware trigger: TriggerActivation (the edge).")
    frame_rate_hz: float | None = Field(None, gt=0, description="Free-run: AcquisitionFrameRate. "
                                        "Null: as fast as the camera goes.")
    features: dict[str, FeatureValue] = Field(
        default_factory=dict, description="Further GenICam features set in this order after the "
        "ones above, e.g. {LineDebouncerTime: 10}. For the camera emulator's image-file feature: "
        "{TestImageSelector: 'Off', ImageFilename: '/dir', ImageFileMode: 'On'}.")
    grab_timeout_ms: int = Field(1000, gt=0, description="How long a triggered grab may take.")
    timeouts_before_reconnect: int = Field(3, ge=1, description="Consecutive grab timeouts that "
                                           "count as a lost camera (software and free-run).")
    reconnect_backoff_s: float = Field(0.5, gt=0, description="First wait before reopening; "
                                       "doubles after each failed attempt.")
    reconnect_max_s: float = Field(10.0, gt=0, description="Longest wait between reopen attempts.")
    offline_after_attempts: int = Field(3, ge=1, description="Failed reopen attempts after which "
                                        "the state goes from reconnecting to offline (it keeps "
                                        "retrying).")
    buffer: BufferStrategy = Field(BufferStrategy.DROP_OLDEST, description="When the inspection "
                                   "queue is full: drop_oldest (a live camera) or wait.")

    @model_validator(mode="after")
    def _check(self) -> BaslerSourceConfig:
        if self.serial and self.user_name:
            raise ValueError("give serial or user_name, not both")
        if self.frame_rate_hz is not None and self.trigger != "free_run":
            raise ValueError("frame_rate_hz applies to trigger: free_run only")
        return self


class BaslerSource(CameraSource):
    """One Basler camera. ``open()`` raises :class:`StartupError` naming the camera and feature."""

    kind = "basler"
    cfg: BaslerSourceConfig

    def __init__(self, cfg: BaslerSourceConfig, triggers: TriggerBus | None = None) -> None:
        super().__init__(cfg, triggers)
        self.buffer_strategy = cfg.buffer
        self.device = ""  # "<model> <serial>" once opened
        self._lock = threading.Lock()
        self._cam: Any = None
        self._removed = threading.Event()  # set by pylon's configuration event for _cam
        self._converter: Any = None
        self._online_since = 0.0
        self._timeouts = 0
        self._reconnector: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        self._closing.clear()
        cam, removed = self._connect()
        with self._lock:
            self._cam, self._removed, self._online_since = cam, removed, time.monotonic()
        self._set_state(CameraState.ONLINE, "opened")

    def close(self) -> None:
        self._closing.set()
        if self._reconnector is not None:
            self._reconnector.join(timeout=10)
        with self._lock:
            cam, self._cam = self._cam, None
        if cam is not None:
            release(cam)
        self._set_state(CameraState.OFFLINE, "closed")

    def _device_label(self) -> str:
        return self.device

    # -- frames ----------------------------------------------------------------------------------

    def _poll(self) -> None:
        self._check_removed()

    def _streaming(self, parts: PartFactory, stop: threading.Event) -> Iterator[Frame]:
        free_run = self.cfg.trigger == "free_run"
        timeout_ms = self.cfg.grab_timeout_ms if free_run else 100  # hardware: idle is normal
        while not stop.is_set():
            self._check_removed()
            with self._lock:
                cam = self._cam if self._state is CameraState.ONLINE else None
            if cam is None:
                stop.wait(0.05)
                continue
            try:
                result = cam.RetrieveResult(timeout_ms, self._pylon.TimeoutHandling_Return)
            except Exception as exc:  # noqa: BLE001 - any pylon error: the device is suspect
                self._lose(cam, f"grab error: {exc}")
                continue
            t_grab = time.monotonic()
            if not result.IsValid():
                if gone(cam):
                    self._lose(cam, "device closed or removed while grabbing")
                elif free_run:
                    self._count_timeout(cam)
                continue
            trig = parts.trigger(self.name, t_mono=t_grab)
            with result:
                frame = self._result_frame(trig, result, t_grab, {"trigger_origin": self.cfg.trigger})
            yield frame

    def _grab(self, trig: Trigger, event: TriggerEvent, stop: threading.Event) -> Frame:
        """Software trigger: fire the camera and wait for that frame."""
        with self._lock:
            cam, state, since = self._cam, self._state, self._online_since
        if cam is None or state is not CameraState.ONLINE or event.t_mono < since:
            return self._offline(trig, event, f"camera {self.name} is {state} at the trigger")
        pylon = self._pylon
        timeout = self.cfg.grab_timeout_ms
        result = None
        try:
            self._drain(cam)
            if cam.WaitForFrameTriggerReady(timeout, pylon.TimeoutHandling_Return):
                cam.ExecuteSoftwareTrigger()
                result = cam.RetrieveResult(timeout, pylon.TimeoutHandling_Return)
        except Exception as exc:  # noqa: BLE001 - the part still gets its frame
            self._lose(cam, f"grab error: {exc}")
            return self._offline(trig, event, f"camera {self.name} failed during the grab: {exc}")
        if result is None or not result.IsValid():
            if gone(cam):
                self._lose(cam, "device closed or removed while grabbing")
                return self._offline(trig, event, f"camera {self.name} was lost during the grab")
            why = "camera not ready for a trigger" if result is None else f"no frame within {timeout} ms"
            return self._timed_out(cam, trig, event, why)
        with result:
            return self._result_frame(trig, result, time.monotonic(), event.meta())

    def _result_frame(self, trig: Trigger, result: Any, t_grab: float,
                      meta: dict[str, Any]) -> Frame:
        meta = {**meta, "camera_frame_id": int(result.BlockID), "grab_id": int(result.ID),
                "camera_timestamp": int(result.TimeStamp), "grab_mono": t_grab}
        source = f"basler:{self.device.rpartition(' ')[2]}#{result.BlockID}"
        if not result.GrabSucceeded():
            self.stats["failed_grabs"] += 1
            error = f"grab failed: {result.ErrorDescription} (0x{result.ErrorCode:x})"
            log.warning("grab_failed", camera=self.name, part_id=trig.part_id, error=error)
            return trig.frame(None, source=source, error=error, meta=meta)
        self._timeouts = 0
        self.stats["frames"] += 1
        try:
            image = self._image(result)
        except Exception as exc:  # noqa: BLE001 - a frame we cannot convert is unreadable
            return trig.frame(None, source=source, error=f"pixel conversion failed: {exc}", meta=meta)
        return trig.frame(image, source=source, meta=meta)

    def _image(self, result: Any) -> np.ndarray:
        pylon = self._pylon
        if result.PixelType in (pylon.PixelType_Mono8, pylon.PixelType_BGR8packed):
            return result.Array  # a copy: the grab buffer goes back to the camera
        if self._converter is None:
            self._converter = pylon.ImageFormatConverter()
        self._converter.OutputPixelFormat = (pylon.PixelType_Mono8 if pylon.IsMono(result.PixelType)
                                             else pylon.PixelType_BGR8packed)
        return self._converter.Convert(result).GetArray()

    def _timed_out(self, cam: Any, trig: Trigger, event: TriggerEvent, error: str) -> Frame:
        self._count_timeout(cam)
        return trig.frame(None, error=f"grab timeout: {error}", meta=event.meta())

    def _count_timeout(self, cam: Any) -> None:
        self.stats["grab_timeouts"] += 1
        self._timeouts += 1
        log.warning("grab_timeout", camera=self.name, consecutive=self._timeouts)
        if self._timeouts >= self.cfg.timeouts_before_reconnect:
            self._lose(cam, f"{self._timeouts} consecutive grab timeouts")

    def _drain(self, cam: Any) -> None:
        """Drop results that arrived after their grab timed out: they belong to earlier parts."""
        while cam.NumReadyBuffers.Value > 0:
            with cam.RetrieveResult(0, self._pylon.TimeoutHandling_Return) as stale:
                if not stale.IsValid():
                    return
                self.stats["stale_dropped"] += 1
                log.warning("stale_frame_dropped", camera=self.name, frame_id=stale.BlockID)

    # -- connection and reconnect ----------------------------------------------------------------

    @property
    def _pylon(self) -> Any:
        return load_pylon()[0]

    def _connect(self) -> tuple[Any, threading.Event]:
        """Find, open, configure and start grabbing. Raises StartupError naming camera + feature."""
        pylon, genicam = load_pylon()
        info = find_device(self.cfg)
        self.device = f"{info.GetModelName()} {info.GetSerialNumber()}"
        removed = threading.Event()
        try:
            cam = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateDevice(info))
        except genicam.GenericException as exc:
            raise StartupError(f"camera {self.name!r} ({self.device}): cannot create the device: "
                               f"{describe(exc)}") from exc
        try:
            cam.RegisterConfiguration(RemovalHandler(removed), pylon.RegistrationMode_Append,
                                      pylon.Cleanup_Delete)
            cam.Open()
            configure(cam, self.cfg, self.device)
            cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except StartupError:
            release(cam)
            raise
        except genicam.GenericException as exc:
            release(cam)
            raise StartupError(f"camera {self.name!r} ({self.device}): {describe(exc)}") from exc
        self._timeouts = 0
        return cam, removed

    def _check_removed(self) -> None:
        if self._removed.is_set():
            with self._lock:
                cam = self._cam
            if cam is not None:
                self._lose(cam, "device removed")

    def _lose(self, cam: Any, reason: str) -> None:
        """Take ``cam`` out of service and start the reconnect thread (once per lost camera)."""
        with self._lock:
            if self._cam is not cam or self._closing.is_set():
                return
            self._cam = None
            self._set_state(CameraState.RECONNECTING, reason)
            self._reconnector = threading.Thread(target=self._reconnect, args=(cam,),
                                                 name=f"reconnect-{self.name}", daemon=True)
        self._reconnector.start()

    def _reconnect(self, lost: Any) -> None:
        release(lost)  # here, not in the grab loop: a dying device may take a while to close
        got = self._reopen(self._connect, lambda error, next_in_s: {"error": str(error),
                                                                    "next_in_s": next_in_s})
        if got is None:
            return
        (cam, removed), attempts = got
        with self._lock:
            if self._closing.is_set():
                release(cam)
                return
            self._cam, self._removed, self._online_since = cam, removed, time.monotonic()
            self._reopened(attempts)


def build(cfg: BaslerSourceConfig, triggers: TriggerBus | None = None) -> BaslerSource:
    """The source for ``cfg``. Call ``open()`` on it to acquire the camera."""
    return BaslerSource(cfg, triggers)
