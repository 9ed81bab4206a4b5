"""The Basler source against pylon's camera emulator (PYLON_CAMEMU=2, shipped with pypylon)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.capture.base import BufferStrategy, PartFactory
from edge_inspector.capture.basler import BaslerSource, BaslerSourceConfig, build
from edge_inspector.capture.discovery import grab_one, pylon_cameras, resolve_camera
from edge_inspector.capture.triggers import CameraState, TimerTrigger
from edge_inspector.envelope import Reason
from edge_inspector.errors import StartupError
from edge_inspector.synth.pcb import make_board

pytest.importorskip("pypylon")

SERIALS = ["0815-0000", "0815-0001"]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _two_emulated_cameras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYLON_CAMEMU", "2")  # pylon reads it at each enumeration


def emulator_image_features(images: list[Path], folder: Path) -> dict[str, str]:
    """Feed pylon's camera emulator these images, in this order, one per trigger (then it wraps).

    Copies them into ``folder`` under sortable names and returns the ``features`` of a
    :class:`BaslerSourceConfig` that switch the emulator to its image-file mode. The daemon-level
    test can put the same dict into the station config.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        shutil.copyfile(image, folder / f"{i:06d}{image.suffix.lower()}")
    return {"TestImageSelector": "Off", "ImageFilename": str(folder), "ImageFileMode": "On"}


def boards(tmp_path: Path, n: int, color: bool = True) -> list[Path]:
    """Stand-ins for the demo's board images: distinct random patterns."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        shape = (96, 128, 3) if color else (96, 128)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        paths.append(tmp_path / "boards" / f"board_{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        cv2.imwrite(str(paths[-1]), img)
    return paths


def cfg(**kw: object) -> BaslerSourceConfig:
    base = {"serial": SERIALS[0], "exposure_us": 100.0, "grab_timeout_ms": 500,
            "reconnect_backoff_s": 0.2}
    return BaslerSourceConfig(**{**base, **kw})


@pytest.fixture
def opened():
    sources: list[BaslerSource] = []

    def make(**kw: object) -> BaslerSource:
        source = build(cfg(**kw))
        source.open()
        sources.append(source)
        return source

    yield make
    for s in sources:
        s.close()


# -- enumerate -------------------------------------------------------------------------------------

def test_enumerates_the_two_emulated_cameras() -> None:
    cams = pylon_cameras()
    assert [c.serial for c in cams] == SERIALS
    assert {(c.vendor, c.interface) for c in cams} == {("Basler", "Emulation")}


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``PYLON_CAMEMU=2 edge-inspector ARGV`` in a fresh process."""
    env = {**os.environ, "PYLON_CAMEMU": "2"}
    return subprocess.run([sys.executable, "-m", "edge_inspector", *argv], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60, check=False)


def test_cli_cameras_json_lists_both_emulated_cameras() -> None:
    out = _cli("cameras", "--json")
    assert out.returncode == 0, out.stderr
    listed = [c for c in json.loads(out.stdout) if c["backend"] == "pylon"]
    assert [(c["vendor"], c["serial"]) for c in listed] == [("Basler", s) for s in SERIALS]
    assert set(listed[0]) >= {"vendor", "model", "serial", "interface"}


def test_cli_grab_saves_one_png(tmp_path: Path) -> None:
    out = _cli("grab", "--camera", SERIALS[1], "-o", str(tmp_path / "one.png"))
    assert out.returncode == 0, out.stderr
    assert cv2.imread(str(tmp_path / "one.png")).shape[:2] == (1040, 1024)  # emulator default


def test_grab_one_by_serial_and_first_found() -> None:
    assert resolve_camera("basler").serial is None
    frame = grab_one(resolve_camera(SERIALS[0]))
    assert frame.readable and frame.image.shape == (1040, 1024)


# -- configure and trigger --------------------------------------------------------------------------

def test_configures_the_camera_from_the_config(opened, run_source) -> None:
    src = opened(exposure_us=2500.0, gain_db=6.0, width=640, height=480, offset_x=32, offset_y=16,
                 packet_size=1500, inter_packet_delay=100, pixel_format="Mono8")
    cam = src._cam
    assert (cam.ExposureTime.Value, cam.Gain.Value) == (2500.0, pytest.approx(6.0, abs=1e-3))
    assert (cam.Width.Value, cam.Height.Value, cam.OffsetX.Value, cam.OffsetY.Value) == (
        640, 480, 32, 16)
    assert (cam.GevSCPSPacketSize.Value, cam.GevSCPD.Value) == (1500, 100)
    assert (cam.TriggerMode.Value, cam.TriggerSource.Value) == ("On", "Software")
    assert src.buffer_strategy is BufferStrategy.DROP_OLDEST
    runner = run_source(src)
    for _ in range(5):
        src.triggers.fire("command")
    frames = runner.wait_for(5)
    assert all(f.readable and f.image.shape == (480, 640) for f in frames)
    assert [f.meta["camera_frame_id"] for f in frames] == list(range(5))
    assert all({"camera_timestamp", "grab_id", "trigger_origin"} <= f.meta.keys() for f in frames)
    assert frames[0].source == f"basler:{SERIALS[0]}#0" and frames[0].camera == "cam0"
    runner.finish_one_part_per_trigger(src.triggers.fired)
    assert src.health()["state"] == "online" and src.health()["frames"] == 5


def test_timer_trigger_and_bridge_events_drive_the_camera(opened, run_source) -> None:
    src = opened()
    runner = run_source(src)
    TimerTrigger(src.triggers, rate_hz=50, count=8).start()
    src.triggers.part_present(mcu_ts=123_456, seq=9)
    frames = runner.wait_for(9)
    runner.finish_one_part_per_trigger(src.triggers.fired)
    bridge = [f for f in frames if f.meta["trigger_origin"] == "bridge"]
    assert bridge[0].meta["trigger_device_ts"] == 123_456 and bridge[0].meta["trigger_device_seq"] == 9
    assert all(f.readable for f in frames)


@pytest.mark.parametrize(("pixel_format", "color"), [("BGR8Packed", True), ("RGB8Packed", True),
                                                     ("Mono8", False)])
def test_emulator_serves_the_fed_images_in_order(opened, run_source, tmp_path: Path,
                                                 pixel_format: str, color: bool) -> None:
    """The pylon path end to end at the source level: one trigger -> the next fed image."""
    images = boards(tmp_path, 5, color=color)
    src = opened(pixel_format=pixel_format,
                 features=emulator_image_features(images, tmp_path / "emu"))
    runner = run_source(src)
    for _ in range(7):
        src.triggers.fire("bridge")
    frames = runner.wait_for(7)
    runner.finish_one_part_per_trigger(7)
    read = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    expected = [cv2.imread(str(p), read) for p in images]
    for frame, want in zip(frames, expected + expected[:2], strict=True):  # it wraps around
        np.testing.assert_array_equal(frame.image, want)  # BGR out, whatever the camera sends


def test_emulator_serves_the_demo_boards_in_order(opened, run_source, tmp_path: Path,
                                                  design) -> None:
    """The synthetic PCBs of the demo (good and defective) through the pylon path, in order."""
    boards_ = [make_board(design, 100 + i, defects=i % 2) for i in range(6)]
    paths = []
    for i, board in enumerate(boards_):
        paths.append(tmp_path / f"board-{i}.png")
        cv2.imwrite(str(paths[-1]), board.image)
    src = opened(features=emulator_image_features(paths, tmp_path / "emu"))
    runner = run_source(src)
    for i in range(6):
        src.triggers.part_present(mcu_ts=1000 * i, seq=i)
    frames = runner.wait_for(6)
    runner.finish_one_part_per_trigger(6)
    for frame, board in zip(frames, boards_, strict=True):
        want = board.image if board.image.ndim == 2 else cv2.cvtColor(board.image, cv2.COLOR_BGR2GRAY)
        np.testing.assert_array_equal(frame.image, want)
    assert [f.meta["trigger_device_seq"] for f in frames] == list(range(6))
    assert [b.defective for b in boards_] == [False, True] * 3


def test_failed_grab_is_an_unreadable_frame(opened, run_source) -> None:
    src = opened()
    runner = run_source(src)
    src._cam.ForceFailedBufferCount.Value = 1
    src._cam.ForceFailedBuffer.Execute()
    for _ in range(3):
        src.triggers.fire()
    frames = runner.wait_for(3)
    runner.finish_one_part_per_trigger(3)
    assert frames[0].image is None and frames[0].error_reason is Reason.UNREADABLE
    assert "incompletely grabbed" in frames[0].error
    assert all(f.readable for f in frames[1:])
    assert src.health()["failed_grabs"] == 1


def test_free_run_and_hardware_trigger_modes(opened, run_source) -> None:
    free = opened(trigger="free_run", frame_rate_hz=100.0)
    runner = run_source(free)
    runner.wait_for(5)
    frames = runner.finish()
    assert all(f.readable and f.meta["trigger_origin"] == "free_run" for f in frames)
    assert len({f.part_id for f in frames}) == len(frames)
    free.close()

    hw = opened(trigger="hardware", trigger_line="Line2", trigger_activation="FallingEdge")
    assert (hw._cam.TriggerSource.Value, hw._cam.TriggerActivation.Value) == ("Line2",
                                                                              "FallingEdge")
    runner = run_source(hw)
    time.sleep(0.3)  # a window: no line edge, no frame, no timeout counted
    assert runner.finish() == [] and hw.state is CameraState.ONLINE


# -- reconnect ----------------------------------------------------------------------------------------

def _loss_scenario(src: BaslerSource, runner, lose) -> list:
    src.triggers.fire()
    runner.wait_for(1)
    lose(src._cam)
    src.triggers.fire()  # while the camera is down (or while it is being lost)
    src.triggers.fire()
    runner.wait_for(3)
    runner.until(lambda: src.state is CameraState.ONLINE and src.health().get("reconnects") == 1,
               what="the reconnect")
    for _ in range(3):
        src.triggers.fire()
    runner.wait_for(6)
    frames = runner.finish_one_part_per_trigger(src.triggers.fired)
    assert frames[0].readable and all(f.readable for f in frames[3:])
    assert all(f.error_reason is Reason.CAMERA_OFFLINE and f.image is None for f in frames[1:3])
    return frames


def test_device_removal_event_reconnects_and_no_reads_the_parts_in_between(opened,
                                                                          run_source) -> None:
    src = opened(exposure_us=4000.0, width=320, height=240)
    runner = run_source(src)

    def remove(cam) -> None:
        cam.FirePnPCallback.Execute()  # the emulator fires pylon's device-removal event
        runner.until(lambda: src.state is not CameraState.ONLINE, what="the removal")

    _loss_scenario(src, runner, remove)
    # the settings were applied again to the reopened device
    assert (src._cam.Width.Value, src._cam.ExposureTime.Value) == (320, 4000.0)


@pytest.mark.parametrize("how", ["Close", "DestroyDevice"])
def test_device_closed_underneath_reconnects(opened, run_source, how: str) -> None:
    src = opened()
    runner = run_source(src)
    _loss_scenario(src, runner, lambda cam: getattr(cam, how)())


def test_consecutive_grab_timeouts_reconnect_and_reapply_settings(opened, run_source) -> None:
    src = opened(grab_timeout_ms=100, timeouts_before_reconnect=2)
    runner = run_source(src)
    src.triggers.fire()
    runner.wait_for(1)
    # Underneath: free-run at 1 fps, so the camera is never ready for a software trigger.
    src._cam.AcquisitionFrameRate.Value = 1.0
    src._cam.TriggerMode.Value = "Off"
    src.triggers.fire()
    src.triggers.fire()
    frames = runner.wait_for(3)
    assert [f.error.startswith("grab timeout") for f in frames[1:]] == [True, True]
    runner.until(lambda: src.state is CameraState.ONLINE and src.health().get("reconnects") == 1)
    assert src._cam.TriggerMode.Value == "On"  # reapplied
    src.triggers.fire()
    runner.wait_for(4)
    frames = runner.finish_one_part_per_trigger(4)
    assert frames[3].readable and src.health()["grab_timeouts"] == 2


def test_losses_under_a_running_trigger_stream_lose_no_part(opened, run_source) -> None:
    """A 100 Hz trigger stream while the device is removed, then closed underneath."""
    src = opened(reconnect_backoff_s=0.1)
    runner = run_source(src)
    timer = TimerTrigger(src.triggers, rate_hz=100).start()
    for lose in (lambda c: c.FirePnPCallback.Execute(), lambda c: c.Close()):
        runner.until(lambda: src.state is CameraState.ONLINE and len(runner.frames) > 10)
        lose(src._cam)
        runner.until(lambda: src.state is not CameraState.ONLINE)
    runner.until(lambda: src.state is CameraState.ONLINE)
    n = len(runner.frames)
    runner.until(lambda: len(runner.frames) >= n + 3)  # parts again after the second reconnect
    timer.stop()
    runner.until(lambda: len(runner.frames) == src.triggers.fired)
    frames = runner.finish_one_part_per_trigger(src.triggers.fired)
    offline = [f for f in frames if f.error_reason is Reason.CAMERA_OFFLINE and f.image is None]
    assert offline and len(offline) == src.health()["offline_triggers"]
    assert all(f.readable or f.error for f in frames)
    assert src.health()["reconnects"] == 2


def test_camera_that_stays_away_goes_offline_and_triggers_are_no_reads(run_source,
                                                                      monkeypatch) -> None:
    src = build(cfg(reconnect_backoff_s=0.05, reconnect_max_s=0.05, offline_after_attempts=2))
    src.open()
    runner = run_source(src)
    monkeypatch.setenv("PYLON_CAMEMU", "0")  # the camera is unplugged: it no longer enumerates
    src._cam.FirePnPCallback.Execute()
    runner.until(lambda: src.state is CameraState.OFFLINE, what="offline")
    src.triggers.fire()
    assert runner.wait_for(1)[0].error_reason is Reason.CAMERA_OFFLINE
    monkeypatch.setenv("PYLON_CAMEMU", "2")  # plugged back in
    runner.until(lambda: src.state is CameraState.ONLINE, what="back online")
    src.triggers.fire()
    assert runner.wait_for(2)[1].readable
    runner.finish_one_part_per_trigger(2)


def test_stop_turns_pending_triggers_into_frames(opened) -> None:
    src = opened()
    for _ in range(3):
        src.triggers.fire()
    stop = threading.Event()
    stop.set()  # the station stops with three triggers not yet taken
    frames = list(src.frames(PartFactory(1.0, run_tag="t"), stop))
    assert len({f.part_id for f in frames}) == 3
    assert all(f.error_reason is Reason.CAMERA_OFFLINE and "stopped" in f.error for f in frames)


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kw", "message"), [
    ({"serial": "12345678"}, "no Basler camera with serial number 12345678"),
    ({"serial": None, "user_name": "left"}, "no Basler camera with user-defined name 'left'"),
    ({"pixel_format": "YUV422Packed"}, "PixelFormat 'YUV422Packed' is not supported"),
    ({"exposure_us": 5e7}, "ExposureTime 50000000.0 is out of the camera's range [1, 1e+07]"),
    ({"width": 5000}, "Width 5000 is out of the camera's range"),
    ({"packet_size": 100}, "GevSCPSPacketSize 100 is out of the camera's range"),
    ({"features": {"BalanceRatio": 1.2}}, "this model has no BalanceRatio feature"),
    ({"features": {"DeviceModelName": "x"}}, "DeviceModelName is not writable"),
])
def test_bad_input_is_a_clear_startup_error(kw: dict, message: str) -> None:
    src = build(cfg(**kw))
    with pytest.raises(StartupError) as err:
        src.open()
    assert message in str(err.value)
    assert str(err.value).startswith("camera 'cam0'")
    src.close()


def test_config_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="serial or user_name"):
        BaslerSourceConfig(serial="1", user_name="x")
    with pytest.raises(ValueError, match="free_run only"):
        BaslerSourceConfig(frame_rate_hz=5)
    with pytest.raises(ValueError, match="Extra inputs"):
        BaslerSourceConfig(exposure=5)


def test_close_is_idempotent_and_thread_safe(opened) -> None:
    src = opened()
    threads = [threading.Thread(target=src.close) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    src.close()
    assert src.state is CameraState.OFFLINE
