"""Reload on a real station: the new stages between two parts, or the old ones kept."""

from __future__ import annotations

import pytest
import yaml

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.service.reload import effective_config


@pytest.fixture
def built(station_config):
    path = station_config()
    st = Station.build(load_config(path), str(path), [])
    rl = st.services.get("reload")
    rl.start()
    yield st, rl, path
    rl.stop()
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
    assert st.versions.config == st.cfg.fingerprint() and rl.status()["state"] == "applied"
    store = next(o for o in st.outputs.outputs if o.name == "store")
    assert store.versions() is st.versions  # the next row is stamped with the new stages


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


def test_a_request_runs_on_the_service_thread_and_a_second_one_waits_its_turn(built):
    st, rl, path = built
    edit(path, policy={"reject_threshold": 0.6})
    assert rl.request("test")
    from tests.helpers import wait_until

    assert wait_until(lambda: rl.status()["state"] == "applied", 30)
    assert st.cfg.policy.reject_threshold == 0.6


def test_overrides_of_a_reload_are_kept_only_once_in_force(built, tmp_path):
    st, rl, path = built
    assert not rl.reload("test", {"regions.reference": str(tmp_path / "missing.png")})
    assert not any("missing" in o for o in rl.overrides)  # refused: not kept
    assert rl.reload("test", {"policy.reject_threshold": "0.65"})
    assert "policy.reject_threshold=0.65" in rl.overrides and st.cfg.policy.reject_threshold == 0.65
    edit(path, policy={"reject_threshold": 0.9})
    assert rl.reload("SIGHUP") and st.cfg.policy.reject_threshold == 0.65  # the override still wins


def test_stages_offered_after_the_loop_ended_are_closed_not_installed(built):
    st, rl, path = built
    from edge_inspector.stages import build_stages

    closed = []
    new = build_stages(st.cfg)
    new.inspector.close = lambda: closed.append(True)
    st.stop.set()  # stopping, and the loop never ran
    assert not st.install(new) and closed and st.inspector is not new.inspector


def test_restart_only_sections_are_kept_and_named(station_config):
    old = load_config(station_config())
    new = load_config(station_config(capture={"seed": 1}, pipeline={"queue_size": 3},
                                     policy={"deadline_ms": 500}))
    cfg, changed = effective_config(old, new)
    assert changed == ["capture", "pipeline.queue_size"]
    assert cfg.capture == old.capture and cfg.pipeline.queue_size == old.pipeline.queue_size
    assert cfg.policy.deadline_ms == 500


def test_a_file_that_is_not_utf8_is_refused_and_the_reload_service_lives_on(built):
    st, rl, path = built
    good = path.read_bytes()
    path.write_bytes(b"policy:\n  deadline_ms: \xff\xfe\n")
    assert rl.request("SIGHUP")
    from tests.helpers import wait_until

    assert wait_until(lambda: rl.status()["state"] == "refused", 30)
    assert "not UTF-8" in rl.status()["error"] and rl.running
    path.write_bytes(good.replace(b"level: warning", b"level: error"))
    assert rl.request("SIGHUP") and wait_until(lambda: rl.status()["state"] == "applied", 30)
    assert st.cfg.logging.level == "error"
