"""The bridge driver with the real firmware in simavr under the faults a line throws at it (issue 13,
items 3 and 4): ARMs whose answer never came (line noise, a stalled host), a bridge restart, more
parts than the bridge's table holds, and what the gate did, as recorded by the daemon.

Firmware timing is asserted on simulated timestamps; every wait is for a condition."""

from __future__ import annotations

import threading
import time

import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Action, Verdict
from edge_inspector.judge.base import Judge
from edge_inspector.plc import sim as simmod
from tests.integration.plc.test_bridge_sim import (  # noqa: F401 - fixtures
    _threads_joined,
    decide,
    make_link,
    pulses,
    sim,
    wait_for,
)

pytestmark = pytest.mark.skipif(simmod.unavailable() is not None,
                                reason=simmod.unavailable() or "")


class JamProxy(simmod.WireProxy):
    """The wire, with a burst of line noise on demand in one direction: every byte garbled, so
    every frame fails its CRC and is dropped."""

    def __init__(self, *args, **kw) -> None:
        self.jam_to_bridge = self.jam_to_host = False
        super().__init__(*args, **kw)

    def _write_all(self, fd: int, data: bytes) -> None:  # type: ignore[override]
        to_bridge = fd == self._target
        if (to_bridge and self.jam_to_bridge) or (not to_bridge and self.jam_to_host):
            data = bytes(b ^ 0x5A for b in data)
        simmod.WireProxy._write_all(fd, data)


@pytest.fixture
def jam(sim, tmp_path):
    proxy = JamProxy(sim.pty, tmp_path / "ttyBRIDGE")
    yield proxy
    proxy.close()


def wait_sim_past(sim, t_us: int, timeout: float = 10.0) -> None:
    """Until the simulation's clock is past ``t_us`` (every pin edge before it has been read)."""
    wait_for(lambda: sim.time_us() > t_us, timeout)


def test_an_arm_whose_answers_were_lost_is_armed_again_and_pulses_once(sim, make_link, jam):
    link = make_link(str(jam.link), ack_timeout_ms=30)
    start = sim.mark()
    trig = PartFactory(2.0).trigger("cam")
    jam.jam_to_host = True  # the ARM reaches the bridge; its ACKs do not come back
    link.arm(trig)
    wait_for(lambda: link.counters["arm_uncertain"] >= 1, 5.0)
    jam.jam_to_host = False
    wait_for(lambda: link.part(trig.part_id).arm == "armed", 5.0)  # a new ARM: DUPLICATE_PART
    assert link.part(trig.part_id).rearms >= 1
    decide(link, trig, Action.REJECT)
    wait_for(lambda: link.part_result(trig.part_id) == "applied_reject", 5.0)
    rise = sim.pins("REJECT", start)[0].t_us
    wait_sim_past(sim, rise + 2_500_000)  # past any deadline either ARM could have set
    assert len(pulses(sim, start)) == 1  # the decision's pulse; no fail-safe after it


def test_an_arm_lost_on_the_line_is_armed_again_and_its_failsafe_comes_by_the_deadline(
        sim, make_link, jam):
    link = make_link(str(jam.link), ack_timeout_ms=30)
    start = sim.mark()
    t0 = sim.time_us()
    trig = PartFactory(1.5).trigger("cam")
    jam.jam_to_bridge = True  # the ARM never reaches the bridge
    link.arm(trig)
    wait_for(lambda: link.counters["arm_uncertain"] >= 1, 5.0)
    jam.jam_to_bridge = False
    wait_for(lambda: link.part(trig.part_id).arm == "armed", 5.0)
    # no decision comes: the bridge's own fail-safe, by the station's deadline, and only one
    _, on = sim.wait("PIN", "REJECT", "1", start=start, timeout=5)
    assert on.t_us <= t0 + 1_500_000
    wait_for(lambda: link.part_result(trig.part_id) == "failsafe_deadline", 5.0)
    wait_sim_past(sim, on.t_us + 2_000_000)
    assert len(pulses(sim, start)) == 1


def test_an_arm_in_flight_when_the_host_stalls_is_armed_again_when_it_recovers(sim, make_link, jam):
    stuck_since: list[float | None] = [None]  # None: the loop is alive
    link = make_link(str(jam.link), heartbeat_timeout_ms=300, stall_timeout_ms=120, ack_timeout_ms=30)
    stuck_since[0] = time.monotonic()
    link.progress = lambda: stuck_since[0] or time.monotonic()
    start = sim.mark()
    parts = PartFactory(6.0)
    held = parts.trigger("cam")
    link.arm(held)  # pending at the bridge when the heartbeat stops: fail-safed then
    wait_for(lambda: link.part(held.part_id).arm == "armed")
    jam.jam_to_bridge = True
    lost = parts.trigger("cam")
    link.arm(lost)  # its ARM is garbled on the line while the loop is stuck
    wait_for(lambda: link.t.quiet, 3.0)
    jam.jam_to_bridge = False
    sim.wait("PIN", "FAULT", "1", start=start, timeout=3)
    wait_for(lambda: link.part_result(held.part_id) == "failsafe_heartbeat", 3.0)
    assert link.part(lost.part_id).arm in ("sent", "uncertain")
    stuck_since[0] = None  # the loop moves again: HELLO, CONFIG, then the new ARM
    insp = decide(link, held, Action.PASS)  # too late: the bridge rejected it on its own
    assert (link.gate(insp).decision.action, link.gate(insp).decision.gate) == (
        Action.REJECT, "failsafe_heartbeat")
    wait_for(lambda: link.part(lost.part_id).arm == "armed", 5.0)
    decide(link, lost, Action.REJECT)
    wait_for(lambda: link.part_result(lost.part_id) == "applied_reject", 3.0)
    assert len(pulses(sim, start)) == 2  # the heartbeat fail-safe and the decision


def test_after_a_bridge_restart_its_parts_are_armed_again_with_the_time_left(sim, make_link):
    link = make_link(sim.pty)
    start = sim.mark()
    t0 = sim.time_us()
    parts = PartFactory(1.5)
    undecided, decided = parts.trigger("cam"), parts.trigger("cam")
    for t in (undecided, decided):
        link.arm(t)
    wait_for(lambda: all(link.part(t.part_id).arm == "armed" for t in (undecided, decided)))
    sim.cmd("RESET")  # the watchdog, a brown-out: its table is gone
    sim.wait("RESET", start=start, timeout=3)
    wait_for(lambda: link.counters["bridge_restarts"] == 1 and link.state == "ready", 5.0)
    wait_for(lambda: all(link.part(t.part_id).arm == "armed" and link.part(t.part_id).rearms == 1
                         for t in (undecided, decided)), 5.0)
    decide(link, decided, Action.REJECT)
    wait_for(lambda: link.part_result(decided.part_id) == "applied_reject", 3.0)
    wait_for(lambda: link.part_result(undecided.part_id) == "failsafe_deadline", 5.0)
    got = pulses(sim, start)
    assert len(got) == 2 and max(rise for rise, _ in got) <= t0 + 1_500_000  # by the deadline


def test_more_parts_than_the_bridge_table_are_armed_in_turn_and_none_refused(sim, make_link):
    link = make_link(sim.pty, ack_timeout_ms=50)
    start = sim.mark()
    parts = PartFactory(8.0)
    trigs = [parts.trigger("cam") for _ in range(24)]
    for t in trigs:
        link.arm(t)
    wait_for(lambda: sum(link.part(t.part_id).arm == "armed" for t in trigs) == 16, 5.0)
    assert link.health()["arms_waiting"] == 8
    actions = {t.part_id: Action.REJECT if i % 3 == 0 else Action.PASS for i, t in enumerate(trigs)}
    for t in trigs:
        wait_for(lambda t=t: link.part(t.part_id).arm == "armed", 5.0)
        decide(link, t, actions[t.part_id])
    wait_for(lambda: all(link.part_result(k) for k in actions), 10.0)
    assert {k: link.part_result(k) for k in actions} == {k: f"applied_{a.lower()}" for k, a in actions.items()}
    assert link.counters["arm_refused"] == 0 and link.counters["arm_table_full"] == 0
    assert len(pulses(sim, start)) == sum(a is Action.REJECT for a in actions.values())


class LateJudge(Judge):
    """Answers PASS at once, except for the second part: just after its deadline."""

    fingerprint = "late"

    def judge(self, frame, regions, deadline_mono):
        if frame.seq == 2:  # past the deadline, within the daemon's grace: a late verdict
            threading.Event().wait(max(0.0, deadline_mono - time.monotonic()) + 0.02)
        return Verdict(defective=False, p_defective=0.05, confidence=0.95, decided_by="vlm", model="late")


def test_the_daemon_records_what_the_gate_did_not_what_it_decided(sim, station_config, monkeypatch):
    """The station's own timeout fail-safe is PASS, the bridge's deadline fail-safe REJECT: the
    late part was rejected at the gate, and that is what the row says (it used to say PASS)."""
    import sqlite3

    from edge_inspector import daemon
    from edge_inspector.config import load_config

    cfg = load_config(station_config(
        plc={"kind": "bridge", "port": sim.pty, "boot_wait_ms": 0, "reject_pulse_ms": 5, "gate_wait_ms": 3000},
        policy={"deadline_ms": 600, "failsafe": {"timeout": "PASS"}}, pipeline={"judge_grace_ms": 300},
        capture={"kind": "demo", "design_seed": 7, "seed": 5000, "defect_rate": 0.0}))
    monkeypatch.setattr("edge_inspector.judge.build_judge", lambda c, threshold: LateJudge())  # stages.py
    station = daemon.Station.build(cfg)
    start = sim.mark()
    runner = threading.Thread(target=station.run, kwargs={"max_parts": 2, "install_signals": False})
    runner.start()
    try:
        runner.join(60)
    finally:
        station.request_stop("test")
        runner.join(10)
    assert not runner.is_alive() and station.counters.decisions == 2
    db = sqlite3.connect(cfg.db_path)
    rows = db.execute("SELECT seq, outcome, reason, action, gate FROM inspections ORDER BY seq").fetchall()
    assert rows == [(1, "PASS", "ok", "PASS", "applied"),
                    (2, "NO-READ", "timeout", "REJECT", "failsafe_deadline")], rows
    assert len(pulses(sim, start)) == 1  # the bridge's fail-safe for part 2, nothing else


def test_a_gate_answer_that_comes_after_the_record_corrects_the_row(sim, station_config):
    """A gate wait far shorter than the bridge's round trip: every part is first recorded
    'unconfirmed' (it used to stay so); the bridge's APPLIED, when it comes, corrects the row before
    the next part is recorded or when the station stops."""
    import sqlite3

    from edge_inspector import daemon
    from edge_inspector.config import load_config

    cfg = load_config(station_config(
        plc={"kind": "bridge", "port": sim.pty, "boot_wait_ms": 0, "reject_pulse_ms": 5, "gate_wait_ms": 0.001},
        policy={"deadline_ms": 5000}, capture={"kind": "demo", "design_seed": 7, "seed": 5100, "defect_rate": 0.5}))
    station = daemon.Station.build(cfg)
    start = sim.mark()
    assert station.run(max_parts=4, install_signals=False) == 0  # the link waits for the last answers
    db = sqlite3.connect(cfg.db_path)
    rows = db.execute("SELECT outcome, action, gate FROM inspections ORDER BY seq").fetchall()
    db.close()
    assert len(rows) == 4 and all(g == "applied" for _, _, g in rows), rows
    assert all(a == ("REJECT" if o == "REJECT" else "PASS") for o, a, _ in rows), rows
    wait_for(lambda: len(pulses(sim, start)) >= sum(a == "REJECT" for _, a, _ in rows), 30.0)
    assert len(pulses(sim, start)) == sum(a == "REJECT" for _, a, _ in rows)


def test_a_station_that_cannot_record_raises_the_bridge_fault_and_its_failsafe_is_pulsed(
        sim, station_config, monkeypatch):
    """A store that cannot write (every write refused on the store's connection): the bridge is
    told (READY off, FAULT on, fault code 3) while parts are still armed and decided: a part triggered then is a NO-READ
    not_recorded and the bridge pulses its REJECT. When a write succeeds again, READY comes back."""
    import sqlite3

    from edge_inspector import daemon
    from edge_inspector.capture.demo import DemoSource, DemoSourceConfig
    from edge_inspector.config import load_config
    from tests.integration.plc.test_bridge_sim import BusSource

    cfg = load_config(station_config(plc={"kind": "bridge", "port": sim.pty, "boot_wait_ms": 0,
                                          "reject_pulse_ms": 5}, policy={"deadline_ms": 3000}))
    boards = DemoSource(DemoSourceConfig(design_seed=7, seed=5000, defect_rate=0.0))
    monkeypatch.setattr(daemon, "build_source", lambda c, triggers=None: BusSource(triggers, boards))
    station = daemon.Station.build(cfg)
    link = station.outputs.outputs[0]
    store = next(o for o in station.outputs.outputs if o.name == "store")
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    start = sim.mark()
    runner.start()
    try:
        sim.wait("PIN", "READY", "1", start=start, timeout=30)
        sim.part(0.01)
        wait_for(lambda: station.counters.decisions == 1, 60)
        # every write fails from now on (a full disk leaves room for a small row now and then in
        # its pages, so the episode could end by itself: tests/integration/test_store_full.py)
        station.between_parts(lambda: store.db.conn.execute("PRAGMA query_only=ON"))
        sim.part(0.01)  # its row cannot be written: the store's fault
        wait_for(lambda: station.counters.decisions == 2, 60)
        assert store.fault is not None
        n = 2
        sim.wait("PIN", "READY", "0", start=start, timeout=10)
        sim.wait("PIN", "FAULT", "1", start=start, timeout=10)
        wait_for(lambda: link.health()["station_fault"] == 3, 10)
        mark = sim.mark()
        sim.part(0.01)  # while the station cannot record: NO-READ, fail-safe REJECT, pulsed
        wait_for(lambda: station.counters.decisions == n + 1, 60)
        third = list(station.last)[-1]
        assert third["reason"] == "not_recorded", third
        wait_for(lambda: link.part_result(third["part_id"]) == "applied_reject", 10)
        wait_for(lambda: len(pulses(sim, mark)) >= 1, 10)  # the pulse's fall read from the sim
        assert len(pulses(sim, mark)) == 1 and link.counters["station_fault_set"] == 1
        station.between_parts(lambda: store.db.conn.execute("PRAGMA query_only=OFF"))
        back = sim.mark()
        sim.part(0.01)  # recorded again (a NO-READ not_recorded, the first write that succeeds)
        wait_for(lambda: store.fault is None, 60)
        sim.wait("PIN", "READY", "1", start=back, timeout=10)
        sim.wait("PIN", "FAULT", "0", start=back, timeout=10)
        wait_for(lambda: link.counters["station_fault_cleared"] == 1, 10)
    finally:
        station.request_stop("test")
        runner.join(30)
    assert not runner.is_alive()
    db = sqlite3.connect(cfg.db_path)
    gates = db.execute("SELECT reason, action, gate FROM inspections ORDER BY seq").fetchall()
    db.close()
    assert gates[0][2] == "applied" and ("not_recorded", "REJECT", "applied") in gates, gates
