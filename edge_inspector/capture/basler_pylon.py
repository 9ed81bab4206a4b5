"""pypylon glue for :mod:`edge_inspector.capture.basler`: find a device, apply GenICam features,
notice removal, release a camera.

pypylon is imported lazily (:func:`load_pylon`): importing this module does not need it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import structlog

from edge_inspector.errors import StartupError

if TYPE_CHECKING:
    from edge_inspector.capture.basler import BaslerSourceConfig

log = structlog.get_logger(__name__)

FeatureValue = bool | int | float | str


def load_pylon() -> tuple[Any, Any]:
    """pypylon's ``(pylon, genicam)``. Raises StartupError if pypylon is not installed."""
    try:
        from pypylon import genicam, pylon
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StartupError("a Basler camera is configured but pypylon is not installed "
                           "(pip install pypylon)") from exc
    return pylon, genicam


def interface_name(device_class: str) -> str:
    """pylon's device class as a person names the interface."""
    return {"BaslerGigE": "GigE", "BaslerUsb": "USB3", "BaslerCamEmu": "Emulation",
            "BaslerGTC/Basler/CXP": "CoaXPress"}.get(device_class, device_class)


def find_device(cfg: BaslerSourceConfig) -> Any:
    """The pylon DeviceInfo that ``cfg`` selects. Raises StartupError naming what pylon sees."""
    pylon, _ = load_pylon()
    devices = list(pylon.TlFactory.GetInstance().EnumerateDevices())
    if cfg.serial:
        match = [d for d in devices if d.GetSerialNumber() == cfg.serial]
        wanted = f"serial number {cfg.serial}"
    elif cfg.user_name:
        match = [d for d in devices if d.GetUserDefinedName() == cfg.user_name]
        wanted = f"user-defined name {cfg.user_name!r}"
    else:
        match, wanted = devices[:1], "any serial number"
    if not match:
        seen = ", ".join(f"{d.GetModelName()} {d.GetSerialNumber()}" for d in devices) or "none"
        raise StartupError(f"camera {cfg.name!r}: no Basler camera with {wanted} is connected "
                           f"(pylon sees: {seen})")
    return match[0]


def configure(cam: Any, cfg: BaslerSourceConfig, device: str) -> None:
    """Apply ``cfg``'s settings to the opened ``cam`` (``device``: "<model> <serial>" for errors).
    Raises StartupError naming the camera and the feature."""
    c, setf = cfg, feature_setter(cam, cfg.name, device)
    if c.pixel_format is not None:
        setf("PixelFormat", c.pixel_format)
    # Offsets first to 0, so that a larger width/height fits; then size; then the offsets.
    for name, value in (("OffsetX", c.offset_x), ("OffsetY", c.offset_y)):
        if value is not None:
            setf(name, 0)
    for name, value in (("Width", c.width), ("Height", c.height),
                        ("OffsetX", c.offset_x), ("OffsetY", c.offset_y)):
        if value is not None:
            setf(name, value)
    if c.exposure_us is not None:
        setf("ExposureAuto", "Off", optional=True)
        setf(("ExposureTime", "ExposureTimeAbs"), c.exposure_us)
    if c.gain_db is not None:
        setf("GainAuto", "Off", optional=True)
        setf("Gain", c.gain_db)
    if c.packet_size is not None:
        setf("GevSCPSPacketSize", c.packet_size)
    if c.inter_packet_delay is not None:
        setf("GevSCPD", c.inter_packet_delay)
    setf("TriggerSelector", "FrameStart")
    if c.trigger == "free_run":
        setf("TriggerMode", "Off")
        if c.frame_rate_hz is not None:
            setf("AcquisitionFrameRateEnable", True)
            setf(("AcquisitionFrameRate", "AcquisitionFrameRateAbs"), c.frame_rate_hz)
    else:
        setf("TriggerMode", "On")
        setf("TriggerSource", "Software" if c.trigger == "software" else c.trigger_line)
        if c.trigger == "hardware":
            setf("TriggerActivation", c.trigger_activation)
    for name, value in c.features.items():
        setf(name, value)


def feature_setter(cam: Any, camera: str, device: str) -> Any:
    """``setf(names, value, optional=False)``: set the first of ``names`` the camera has, checking
    writability, enum symbols, range and increment first. Raises StartupError naming the feature."""
    pylon, genicam = load_pylon()
    nodemap = cam.GetNodeMap()
    where = f"camera {camera!r} ({device})"

    def setf(names: str | tuple[str, ...], value: FeatureValue, optional: bool = False) -> None:
        names = (names,) if isinstance(names, str) else names
        node = next((n for n in map(nodemap.GetNode, names) if n is not None and n.IsValid()),
                    None)
        if node is None:
            if optional:
                return
            raise StartupError(f"{where}: this model has no {names[0]} feature")
        name = node.Node.GetName()
        if not node.IsWritable():
            raise StartupError(f"{where}: {name} is not writable")
        if isinstance(node, pylon.EnumParameter) and str(value) not in node.Symbolics:
            raise StartupError(f"{where}: {name} {value!r} is not supported; this model "
                               f"offers {', '.join(node.Symbolics)}")
        if isinstance(node, (pylon.IntegerParameter, pylon.FloatParameter)):
            lo, hi = node.Min, node.Max
            if not lo <= value <= hi:
                raise StartupError(f"{where}: {name} {value} is out of the camera's range "
                                   f"[{lo:g}, {hi:g}]")
            if isinstance(node, pylon.IntegerParameter) and (value - lo) % node.Inc:
                raise StartupError(f"{where}: {name} {value} is not a valid step: it must be "
                                   f"{lo} plus a multiple of {node.Inc}")
        try:
            node.Value = value
        except genicam.GenericException as exc:
            raise StartupError(f"{where}: cannot set {name} to {value!r}: "
                               f"{describe(exc)}") from exc
        log.debug("camera_feature_set", camera=camera, feature=name, value=value)

    return setf


class RemovalHandler:
    """pylon's configuration event handler, made lazily (pypylon is imported on first use)."""

    def __new__(cls, removed: threading.Event) -> Any:
        pylon, _ = load_pylon()

        class Handler(pylon.ConfigurationEventHandler):
            def OnCameraDeviceRemoved(self, camera: Any) -> None:  # noqa: N802 - pylon's name
                removed.set()  # pylon's thread: only flag it; the grab loop reconnects

        return Handler()


def gone(cam: Any) -> bool:
    """Whether ``cam``'s device was removed, detached, closed or stopped grabbing."""
    try:
        return bool(cam.IsCameraDeviceRemoved() or not cam.IsPylonDeviceAttached()
                    or not cam.IsOpen() or not cam.IsGrabbing())
    except Exception:  # noqa: BLE001
        return True


def release(cam: Any) -> None:
    """Stop, close and destroy, ignoring errors: the device may already be gone."""
    for step in ("StopGrabbing", "Close", "DestroyDevice"):
        try:
            getattr(cam, step)()
        except Exception as exc:  # noqa: BLE001
            log.debug("camera_release_step_failed", step=step, error=str(exc))


def describe(exc: Exception) -> str:
    """A genicam exception's description without pylon's file/line suffix."""
    text = str(getattr(exc, "GetDescription", lambda: str(exc))())
    return text.split(" : ")[0].strip() if " : " in text else text.strip()
