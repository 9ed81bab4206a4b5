"""Camera listing from sysfs and camera specs, without devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_inspector.capture import discovery
from edge_inspector.capture.basler import BaslerSourceConfig
from edge_inspector.capture.discovery import opencv_cameras, resolve_camera
from edge_inspector.capture.opencv import OpenCVSourceConfig
from edge_inspector.errors import StartupError


def fake_v4l(root: Path) -> Path:
    """/sys/class/video4linux with one USB webcam (a capture and a metadata node)."""
    usb = root / "devices" / "usb1" / "1-1"
    (usb / "1-1:1.0").mkdir(parents=True)
    for name, value in {"manufacturer": "Logitech", "product": "C920", "serial": "ABC123",
                        "idVendor": "046d"}.items():
        (usb / name).write_text(value + "\n")
    sysfs = root / "video4linux"
    for node, index in (("video0", "0"), ("video1", "1")):
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text("HD Pro Webcam C920\n")
        (sysfs / node / "index").write_text(index + "\n")
        (sysfs / node / "device").symlink_to(usb / "1-1:1.0")
    return sysfs


def test_opencv_cameras_from_sysfs(tmp_path: Path) -> None:
    [cam] = opencv_cameras(fake_v4l(tmp_path))
    assert (cam.backend, cam.vendor, cam.model, cam.serial, cam.interface, cam.address) == (
        "opencv", "Logitech", "C920", "ABC123", "V4L2", "/dev/video0")
    assert opencv_cameras(tmp_path / "absent") == []


def test_resolve_opencv_specs(tmp_path: Path) -> None:
    assert resolve_camera("opencv:2") == OpenCVSourceConfig(name="opencv:2", device=2)
    assert resolve_camera("0").device == 0
    assert resolve_camera("rtsp://10.0.0.5/stream1").url == "rtsp://10.0.0.5/stream1"
    video = tmp_path / "line.avi"
    video.write_bytes(b"x")
    assert resolve_camera(str(video)).file == video


def test_resolve_basler_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    cams = [discovery.CameraInfo("pylon", "Basler", "acA1300", "2345", "GigE", "left")]
    monkeypatch.setattr(discovery, "pylon_cameras", lambda: cams)
    monkeypatch.setattr(discovery, "opencv_cameras", lambda: [])
    assert isinstance(resolve_camera("basler"), BaslerSourceConfig)
    assert resolve_camera("2345").serial == "2345"
    assert resolve_camera("left").user_name == "left"
    with pytest.raises(StartupError, match=r"camera 'right'.*cameras seen: pylon:2345"):
        resolve_camera("right")
