"""OpenCV source config and behaviour that needs no device."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from edge_inspector.capture.base import BufferStrategy, PartFactory
from edge_inspector.capture.basler import BaslerSourceConfig
from edge_inspector.capture.opencv import OpenCVSourceConfig, build
from edge_inspector.envelope import Reason


@pytest.mark.parametrize("kw", [{}, {"device": 0, "url": "rtsp://x"},
                                {"device": 0, "file": "a.avi"}])
def test_exactly_one_input(kw: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one of device, url, file"):
        OpenCVSourceConfig(**kw)


def test_buffer_strategy_defaults_by_kind_and_can_be_set() -> None:
    assert build(OpenCVSourceConfig(device=0)).buffer_strategy is BufferStrategy.DROP_OLDEST
    assert build(OpenCVSourceConfig(url="rtsp://cam/1")).buffer_strategy is BufferStrategy.DROP_OLDEST
    assert build(OpenCVSourceConfig(file="a.avi")).buffer_strategy is BufferStrategy.WAIT
    assert build(OpenCVSourceConfig(device=0, buffer="wait")).buffer_strategy is BufferStrategy.WAIT


def test_file_path_resolves_against_the_config_directory(tmp_path: Path) -> None:
    cfg = OpenCVSourceConfig.model_validate({"kind": "opencv", "file": "line.avi"},
                                            context={"base_dir": tmp_path})
    assert cfg.file == tmp_path / "line.avi"


def test_typos_are_errors() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        OpenCVSourceConfig(device=0, rate=5)
    with pytest.raises(ValidationError):
        OpenCVSourceConfig(kind="basler", device=0)


@pytest.mark.parametrize("model", [OpenCVSourceConfig, BaslerSourceConfig])
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    assert all(f.description for f in model.model_fields.values())


def test_software_trigger_on_a_closed_live_source_is_a_camera_offline_frame() -> None:
    """A trigger while the camera is down still makes exactly one part, a NO-READ."""
    src = build(OpenCVSourceConfig(device=0, trigger="software"))  # never opened: offline
    stop = threading.Event()
    frames = src.frames(PartFactory(1.0, run_tag="u"), stop)
    src.triggers.fire()
    src.triggers.fire()
    got = [next(frames), next(frames)]
    stop.set()
    assert list(frames) == []
    assert [f.error_reason for f in got] == [Reason.CAMERA_OFFLINE] * 2
    assert [f.part_id for f in got] == ["u-000001", "u-000002"]
    assert src.health()["offline_triggers"] == 2 and src.health()["state"] == "offline"


def test_capture_modules_import_without_pypylon() -> None:
    code = ("import sys; sys.modules['pypylon'] = None\n"
            "import edge_inspector.capture.basler, edge_inspector.capture.opencv\n"
            "import edge_inspector.capture.discovery, edge_inspector.capture.triggers\n"
            "import edge_inspector.cli.cameras\n"
            "from edge_inspector.capture.discovery import pylon_cameras\n"
            "assert pylon_cameras() == []\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
