"""A multi-camera station's bridge lanes with the real firmware: each camera's lane is a bridge of its
own, one simavr process per camera (two ptys). Each bridge is armed with and actuates only its own
camera's parts, the rows' ``gate`` is what that bridge did, and a bridge that stops leaves its
camera's parts to the gate's fail-safe or undelivered outcome while the other lane goes on.

Pulses are counted on the simulated gate output (tests/integration/plc/test_bridge_sim.py)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.plc import sim as simmod
from edge_inspector.plc.lane import Lane
from tests.conftest import DESIGN_SEED, write_config
from tests.integration.plc.test_bridge_sim import _threads_joined, pulses, wait_for  # noqa: F401

pytestmark = pytest.mark.skipif(simmod.unavailable() is not None,
                                reason=simmod.unavailable() or "")

CAMERAS = (("top", 1000), ("bottom", 2000))


@pytest.fixture
def sims():
    made: dict[str, simmod.BridgeSim] = {}
    try:
        for name, _ in CAMERAS:
            made[name] = simmod.BridgeSim()
            made[name].wait("PIN", "FAULT", "1")  # boot: the safe state
        yield made
    finally:
        for s in made.values():
            s.stop()


def build(tmp_path, product_dir, sims, deadline_ms: int = 4000) -> Station:
    cams = [{"name": name, "capture": {"kind": "demo", "design_seed": DESIGN_SEED, "seed": seed,
                                       "defect_rate": 0.5, "interval_ms": 120},
             # the gate's answer waited for as a condition (a loaded machine answers late)
             "plc": {"kind": "bridge", "port": sims[name].pty, "boot_wait_ms": 0, "reject_pulse_ms": 5,
                     "gate_wait_ms": 3000}}
            for name, seed in CAMERAS]
    path = write_config(tmp_path / "lanes.yaml", {
        "station": {"name": "lanes", "data_dir": str(tmp_path / "data")},
        "regions": {"kind": "variation", "reference": str(product_dir / "reference.png"),
                    "good_images": str(product_dir / "good")},
        "policy": {"deadline_ms": deadline_ms}, "logging": {"level": "warning"}, "cameras": cams})
    return Station.build(load_config(path))


def rows(station: Station) -> list[tuple]:
    db = sqlite3.connect(station.cfg.db_path)
    try:
        return db.execute("SELECT camera, part_id, seq, outcome, action, gate FROM inspections "
                          "ORDER BY camera, seq").fetchall()
    finally:
        db.close()


def lanes_of(station: Station) -> dict[str, Lane]:
    return {x.camera: x for x in station.outputs.outputs if isinstance(x, Lane)}


def settle_pulses(sim: simmod.BridgeSim, want: int) -> list:
    """The gate's pulses once ``want`` have come and the simulation ran a second past them."""
    wait_for(lambda: len(pulses(sim, 0)) >= want, 20.0)
    t = sim.time_us()
    wait_for(lambda: sim.time_us() > t + 1_000_000, 20.0)
    return pulses(sim, 0)


def test_each_bridge_is_armed_with_and_pulses_for_its_own_cameras_parts_only(sims, tmp_path, product_dir):
    station = build(tmp_path, product_dir, sims)
    lanes = lanes_of(station)
    assert list(lanes) == ["top", "bottom"]
    assert {c: x.link.cfg.port for c, x in lanes.items()} == {c: s.pty for c, s in sims.items()}
    assert station.run(max_parts=16, install_signals=False) == 0

    got = rows(station)
    assert len(got) == 16 and {r[0] for r in got} == {"top", "bottom"}
    for camera, lane in lanes.items():
        mine = [r for r in got if r[0] == camera]
        others = [r for r in got if r[0] != camera]
        assert all(r[5] == "applied" for r in mine), mine  # the bridge answered every one
        for _, part_id, _, _, action, _ in mine:
            assert lane.link.part_result(part_id) == f"applied_{action.lower()}", (camera, part_id)
        assert all(lane.link.part(r[1]) is None for r in others)  # never armed with another's part
        assert lane.link.counters["armed"] == len(mine)
        rejects = sum(r[4] == "REJECT" for r in mine)
        assert len(settle_pulses(sims[camera], rejects)) == rejects, (camera, mine)
    assert any(r[4] == "REJECT" for r in got) and any(r[4] == "PASS" for r in got)


def test_a_stopped_bridge_fails_its_own_cameras_parts_safe_while_the_other_lane_goes_on(
        sims, tmp_path, product_dir):
    station = build(tmp_path, product_dir, sims, deadline_ms=1500)
    lanes = lanes_of(station)
    units = {u.name: u for u in station.units}
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        wait_for(lambda: all(u.decided >= 3 for u in units.values()), 60.0)
        sims["top"].stop()  # the top camera's bridge is gone (unplugged, powered off)
        # the port gone (not merely a late heartbeat: an ARM written then may have reached it)
        wait_for(lambda: not lanes["top"].link.t.connected, 30.0)
        after = {n: u.triggered for n, u in units.items()}
        wait_for(lambda: all(u.decided >= after[n] + 4 for n, u in units.items()), 60.0)
    finally:
        station.request_stop("test")
        runner.join(60)
    assert not runner.is_alive()
    got = rows(station)
    top_after = [r for r in got if r[0] == "top" and r[2] > after["top"]]
    bottom_after = [r for r in got if r[0] == "bottom" and r[2] > after["bottom"]]
    assert len(top_after) >= 4 and len(bottom_after) >= 4
    # nobody actuated the top camera's parts: the rows say so, whatever was decided
    assert all((r[4], r[5]) == ("PASS", "not_delivered") for r in top_after), top_after
    assert all(r[5] == "applied" for r in bottom_after), bottom_after  # the bottom lane goes on
    bottom = [r for r in got if r[0] == "bottom"]
    rejects = sum(r[4] == "REJECT" for r in bottom)
    assert len(settle_pulses(sims["bottom"], rejects)) == rejects
