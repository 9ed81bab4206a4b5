"""``cameras:``: validation names the key, and each camera's effective config."""

from __future__ import annotations

import pytest
import yaml

from edge_inspector.config import load_config
from edge_inspector.errors import ConfigError


def write(tmp_path, data) -> str:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def cams(*entries, **top):
    return {"station": {"name": "s1"}, "cameras": list(entries), **top}


def cam(name, **kw):
    return {"name": name, "capture": {"kind": "demo"}, **kw}


def error(tmp_path, data) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, data))
    return str(exc.value)


def test_without_cameras_one_camera_named_after_its_source_with_the_station_config():
    cfg = load_config()
    assert not cfg.multi_camera
    (name, one), = cfg.camera_configs().items()
    assert name == cfg.capture.name == "demo-cam" and one is cfg


def test_each_camera_gets_its_own_capture_deadline_regions_and_lane_and_the_rest_the_stations(tmp_path):
    data = cams(cam("top"), cam("bottom", deadline_ms=750, regions={"max_shift_px": 30},
                                plc={"kind": "modbus_rtu", "port": "/dev/ttyX", "unit_id": 7}),
                policy={"deadline_ms": 1200, "min_confidence": 0.6})
    cfg = load_config(write(tmp_path, data))
    top, bottom = cfg.camera_configs().values()
    assert cfg.multi_camera and list(cfg.camera_configs()) == ["top", "bottom"]
    assert (top.capture.name, bottom.capture.name) == ("top", "bottom")  # frames carry the camera
    assert top.policy.deadline_ms == 1200 and bottom.policy.deadline_ms == 750
    assert bottom.policy.min_confidence == 0.6  # the rest of the policy is the station's
    assert bottom.regions.kind == "variation" and bottom.regions.max_shift_px == 30
    assert top.regions == cfg.regions
    assert top.plc.kind == "none" and bottom.plc.kind == "modbus_rtu" and bottom.plc.unit_id == 7
    assert top.cameras is None and bottom.station == cfg.station


def test_a_duplicate_camera_name_is_named(tmp_path):
    msg = error(tmp_path, cams(cam("top"), cam("top")))
    assert "cameras.1.name" in msg and "duplicate camera name 'top'" in msg and "cameras.0.name" in msg


def test_an_unknown_key_in_a_camera_is_named_with_its_path(tmp_path):
    msg = error(tmp_path, cams(cam("top"), cam("bottom", dedline_ms=5)))
    assert "cameras.1.dedline_ms: unknown key" in msg
    msg = error(tmp_path, cams(cam("top", capture={"kind": "demo", "sede": 1})))
    assert "cameras.0.capture.sede: unknown key" in msg


@pytest.mark.parametrize(("data", "key", "words"), [
    (cams(cam("result")), "cameras.0.name", "MQTT topics"),
    (cams(cam("a b")), "cameras.0.name", "pattern"),
    (cams(), "cameras", "at least 1"),
    (cams(cam("top"), capture={"kind": "demo"}), "capture", "each camera has its own capture"),
    (cams(cam("top"), plc={"kind": "bridge", "port": "/dev/ttyACM0"}), "plc", "own PLC lane"),
    (cams(cam("a", view_set="board"), cam("b", view_set="board", deadline_ms=10)), "cameras", "same deadline_ms"),
    (cams(cam("a", view_set="a")), "cameras", "a name no camera has"),
    (cams(cam("a", view_set="v", plc={"kind": "modbus_rtu", "port": "/dev/x"}),
          cam("b", view_set="v", plc={"kind": "modbus_rtu", "port": "/dev/y"})), "cameras", "one part has one gate"),
    (cams({"name": "a", "view_set": "v", "capture": {"kind": "opencv", "url": "rtsp://cam", "trigger": "software"}}),
     "cameras.0.capture.trigger", "software triggers in a view set"),
])
def test_cross_field_errors_name_their_key(tmp_path, data, key, words):
    msg = error(tmp_path, data)
    assert f"  {key}:" in msg and words in msg, msg


def test_a_cameras_recipe_chooses_its_regions_model(tmp_path):
    (tmp_path / "ref.png").write_bytes(b"")
    recipe = tmp_path / "bottom.yaml"
    recipe.write_text(yaml.safe_dump({"product": "bottom", "regions": {"kind": "texture", "good_images": "good"}}))
    cfg = load_config(write(tmp_path, cams(cam("top"), cam("bottom", recipe="bottom.yaml"))))
    top, bottom = cfg.camera_configs().values()
    assert top.regions.kind == "variation" and bottom.regions.kind == "texture"
    assert bottom.regions.good_images == tmp_path / "good"  # relative to the recipe
    recipe.write_text(yaml.safe_dump({"product": "bottom", "regions": {"kind": "texture", "bogus": 1}}))
    msg = error(tmp_path, cams(cam("top"), cam("bottom", recipe="bottom.yaml")))
    assert "regions.bogus: unknown key" in msg and "bottom.yaml" in msg
