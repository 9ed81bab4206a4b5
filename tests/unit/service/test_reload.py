"""Reload on a real station: the new stages between two parts, or the old ones kept."""

from __future__ import annotations

import yaml

import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.service.reload import Reloader, effective_config


@pytest.fixture
def built(station_config):
    path = station_config()
    st = Station.build(load_config(path), str(path), [])
    rl = next(s for s in st.services if isinstance(s, Reloader))
    rl.start(st)
    yield st, rl, path
    st.inspector.close()
    st.outputs.close()


def edit(path, **sections):
    data = yaml.safe_load(path.read_text())
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    path.write_text(yaml.safe_dump(data))


def test_a_good_config_swaps_the_stages(built):
    st, rl, path = built
    old_inspector, old_fp = st.inspector, st.cfg.fingerprint()
    edit(path, policy={"reject_threshold": 0.7, "deadline_ms": 900})
    assert rl.reload("test")
    assert st.inspector is not old_inspector and st.cfg.policy.reject_threshold == 0.7
    assert st.parts.deadline_s == 0.9 and st.cfg.fingerprint() != old_fp
    store = st.outputs.outputs[0]
    assert store.config_hash == st.cfg.fingerprint() and rl.status()["state"] == "applied"


def test_a_bad_config_is_refused_and_the_old_one_stays(built):
    st, rl, path = built
    old_inspector, old_fp = st.inspector, st.cfg.fingerprint()
    path.write_text(path.read_text() + "policy:\n  deadline_ms: soon\n")
    assert not rl.reload("test")
    assert st.inspector is old_inspector and st.cfg.fingerprint() == old_fp
    assert rl.status()["state"] == "refused" and "deadline_ms" in rl.status()["error"]


def test_stages_that_cannot_be_built_are_refused(built, tmp_path):
    st, rl, path = built
    old_inspector = st.inspector
    edit(path, regions={"reference": str(tmp_path / "missing.png")})
    assert not rl.reload("test")
    assert st.inspector is old_inspector and "missing.png" in rl.status()["error"]


def test_restart_only_sections_are_kept_and_named(station_config):
    old = load_config(station_config())
    new = load_config(station_config(capture={"seed": 1}, pipeline={"queue_size": 3},
                                     policy={"deadline_ms": 500}))
    cfg, changed = effective_config(old, new)
    assert changed == ["capture", "pipeline.queue_size"]
    assert cfg.capture == old.capture and cfg.pipeline.queue_size == old.pipeline.queue_size
    assert cfg.policy.deadline_ms == 500
