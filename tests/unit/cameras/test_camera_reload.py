"""A reload of a multi-camera station: regions, recipes and deadlines reload; devices and lanes wait."""

from __future__ import annotations

from edge_inspector.config import load_config
from edge_inspector.service.reload import effective_config


def cfg(*cams: str):
    return load_config(None, [f"cameras=[{', '.join(cams)}]"])


def test_a_cameras_deadline_reloads_and_its_source_waits_for_a_restart():
    old = cfg("{name: top, capture: {kind: demo, seed: 1}}", "{name: bottom, capture: {kind: demo}}")
    new = cfg("{name: top, capture: {kind: demo, seed: 2}, deadline_ms: 900}", "{name: bottom, capture: {kind: demo}}")
    got, changed = effective_config(old, new)
    assert changed == ["cameras.0.capture"]
    assert got.cameras[0].deadline_ms == 900 and got.cameras[0].capture.seed == 1


def test_a_new_set_of_cameras_keeps_the_running_one_until_a_restart():
    old = cfg("{name: top, capture: {kind: demo}}")
    new = cfg("{name: top, capture: {kind: demo}}", "{name: side, capture: {kind: demo}, deadline_ms: 5}")
    got, changed = effective_config(old, new)
    assert changed == ["cameras"] and [c.name for c in got.cameras] == ["top"]
