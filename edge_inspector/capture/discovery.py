"""Set-up helpers: list the cameras pylon and OpenCV can see, and grab one frame from one of them.

Camera specs for :func:`resolve_camera` (the ``--camera`` of ``edge-inspector grab``):

- ``basler``: the first Basler camera pylon finds;
- a Basler serial number or user-defined name (``23456789``, ``left``);
- ``opencv:N`` (or a bare ``N`` that is no Basler serial number): the USB camera ``/dev/videoN``;
- ``rtsp://...``, ``http://...``: a network stream;
- the path of a video file.

OpenCV has no enumeration API; on Linux the USB cameras are read from sysfs (V4L2 capture nodes),
without opening them, so listing never disturbs a running station.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
import structlog

from edge_inspector.capture.base import PartFactory, Source
from edge_inspector.capture.basler import BaslerSourceConfig, interface_name
from edge_inspector.capture.opencv import OpenCVSourceConfig
from edge_inspector.envelope import Frame
from edge_inspector.errors import StartupError

log = structlog.get_logger(__name__)

V4L_SYSFS = Path("/sys/class/video4linux")


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """One device as a backend sees it."""

    backend: str  # "pylon" or "opencv"
    vendor: str
    model: str
    serial: str
    interface: str  # GigE, USB3, Emulation, V4L2, ...
    name: str = ""  # pylon's user-defined name, or the V4L2 device name
    address: str = ""  # IP address, /dev/videoN, ...

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def pylon_cameras() -> list[CameraInfo]:
    """The devices pylon enumerates (empty if pypylon is not installed)."""
    try:
        from pypylon import pylon
    except ImportError:
        log.info("pypylon_missing", detail="Basler cameras are not listed")
        return []
    out = []
    for d in pylon.TlFactory.GetInstance().EnumerateDevices():
        ip = d.GetIpAddress() if d.IsIpAddressAvailable() else ""
        out.append(CameraInfo("pylon", d.GetVendorName(), d.GetModelName(), d.GetSerialNumber(),
                              interface_name(d.GetDeviceClass()), d.GetUserDefinedName(), ip))
    return out


def opencv_cameras(sysfs: Path = V4L_SYSFS) -> list[CameraInfo]:
    """USB (V4L2) capture devices from sysfs. Metadata nodes (index != 0) are skipped."""
    out = []
    for node in sorted(sysfs.glob("video*"), key=lambda p: int(p.name[5:] or 0)):
        if _read(node / "index", "0") != "0":
            continue
        usb = (node / "device").resolve().parent  # the USB device above the video interface
        out.append(CameraInfo(
            "opencv", _read(usb / "manufacturer") or _read(usb / "idVendor"),
            _read(usb / "product") or _read(node / "name"), _read(usb / "serial"), "V4L2",
            _read(node / "name"), f"/dev/{node.name}"))
    return out


def list_cameras() -> list[CameraInfo]:
    return pylon_cameras() + opencv_cameras()


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return default


def resolve_camera(spec: str) -> BaslerSourceConfig | OpenCVSourceConfig:
    """The source config that ``spec`` names (see the module docstring)."""
    spec = spec.strip()
    if spec.startswith("opencv:") and spec[7:].isdigit():
        return OpenCVSourceConfig(name=spec, device=int(spec[7:]))
    if "://" in spec:
        return OpenCVSourceConfig(name=spec, url=spec)
    if spec.lower() in ("basler", "pylon"):
        return BaslerSourceConfig(name=spec, pixel_format=None)
    for cam in pylon_cameras():  # before bare numbers: Basler serial numbers are digits too
        if spec == cam.serial:
            return BaslerSourceConfig(name=spec, serial=spec, pixel_format=None)
        if spec and spec == cam.name:
            return BaslerSourceConfig(name=spec, user_name=spec, pixel_format=None)
    if spec.isdigit():
        return OpenCVSourceConfig(name=spec, device=int(spec))
    if Path(spec).is_file():
        return OpenCVSourceConfig(name=spec, file=Path(spec).resolve())
    seen = ", ".join(f"{c.backend}:{c.serial or c.address}" for c in list_cameras()) or "none"
    raise StartupError(f"camera {spec!r}: not a Basler serial number or user-defined name, an "
                       f"OpenCV index, a URL or a video file (cameras seen: {seen})")


def grab_one(cfg: BaslerSourceConfig | OpenCVSourceConfig, timeout_s: float = 5.0) -> Frame:
    """Open the camera, take one software-triggered frame (a file: its first frame), close."""
    source: Source
    if isinstance(cfg, BaslerSourceConfig):
        from edge_inspector.capture.basler import BaslerSource

        cfg = cfg.model_copy(update={"trigger": "software", "frame_rate_hz": None,
                                     "grab_timeout_ms": int(timeout_s * 1000)})
        source = BaslerSource(cfg)
    else:
        from edge_inspector.capture.opencv import OpenCVSource

        mode = "software" if cfg.live else "free_run"
        cfg = cfg.model_copy(update={"trigger": mode, "grab_timeout_s": timeout_s})
        source = OpenCVSource(cfg)
    stop = threading.Event()
    source.open()
    try:
        frames = source.frames(PartFactory(deadline_s=timeout_s, run_tag="grab"), stop)
        if cfg.trigger == "software":
            source.triggers.fire("command")  # type: ignore[attr-defined]
        frame = next(frames, None)
        stop.set()
    finally:
        source.close()
    if frame is None or not frame.readable:
        why = frame.error if frame is not None else "no frame"
        raise StartupError(f"camera {cfg.name!r}: could not grab a frame: {why}")
    return frame
