"""The bridge driver, byte for byte against a fake bridge: uncertain ARMs armed again, the bridge's
16-entry table, a bridge restart, and what the gate did (issue 13, items 3 and 4)."""

from __future__ import annotations

import time

from edge_inspector.capture.base import PartFactory
from edge_inspector.envelope import Action
from edge_inspector.plc import protocol as p
from tests.unit.plc.test_bridge_driver import (  # noqa: F401 - fixtures
    _threads_joined,
    handshake,
    inspection,
    make_link,
    peer,
    wait_for,
)


def bridge_id(link, trig) -> int:
    return (link._id_base + trig.seq) & 0xFFFFFFFF


def arms(peer, timeout: float = 0.3, ack: bool = True) -> list[p.Frame]:
    """The ARMs that arrive until the driver is silent for ``timeout`` (each ACKed when ``ack``)."""
    got: dict[int, p.Frame] = {}  # by seq: a retransmission is the same frame
    while True:
        frames = peer.frames(timeout, n=1)
        if not frames:
            return list(got.values())
        f = frames[0]
        if isinstance(f.message, p.Arm):
            got.setdefault(f.seq, f)
            if ack:
                peer.ack(f)
        elif isinstance(f.message, p.Heartbeat | p.StatusRequest):
            peer.ack(f)


def test_an_arm_that_was_never_answered_is_armed_again_with_the_time_left(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    trig = PartFactory(3.0).trigger("cam")
    link.arm(trig)
    first = peer.expect(p.Arm)
    for _ in range(4):  # the retransmissions, byte for byte; line noise eats every answer
        assert peer.expect(p.Arm, timeout=1.0).seq == first.seq
    again = peer.expect(p.Arm, timeout=2.0)  # a new ARM (a new frame), for the same part
    assert again.seq != first.seq and again.message.part_id == bridge_id(link, trig)
    assert again.message.deadline_ms <= first.message.deadline_ms - 200  # 5 x 50 ms later
    peer.nak(again, p.NakReason.DUPLICATE_PART)  # the first had reached the bridge: fine
    wait_for(lambda: link.part(trig.part_id).arm == "armed")
    link.emit(inspection(trig, Action.REJECT))
    decide = peer.expect(p.Decide)
    peer.ack(decide)
    peer.event(p.Applied(bridge_id(link, trig), p.Verdict.REJECT, 10, 0))
    wait_for(lambda: link.part_result(trig.part_id) == "applied_reject")
    assert link.counters["rearmed"] == 1


def test_a_decide_refused_as_unknown_is_armed_and_decided_again_while_time_allows(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    trig = PartFactory(2.0).trigger("cam")
    link.arm(trig)
    first = peer.expect(p.Arm)
    link.emit(inspection(trig, Action.REJECT))  # decided while its ARM is unanswered
    for _ in range(4):
        peer.expect(p.Arm, timeout=1.0)
    decide = peer.expect(p.Decide, timeout=1.0)  # the ARM is uncertain: maybe the bridge holds it
    peer.nak(decide, p.NakReason.UNKNOWN_PART)  # it does not, and never finished it
    arm = peer.expect(p.Arm)
    assert arm.seq not in (first.seq, decide.seq) and arm.message.part_id == bridge_id(link, trig)
    peer.ack(arm)
    again = peer.expect(p.Decide)  # a new DECIDE: the first was refused, so not applied
    assert again.seq != decide.seq and again.message == decide.message
    peer.ack(again)
    peer.event(p.Applied(bridge_id(link, trig), p.Verdict.REJECT, 10, 0))
    wait_for(lambda: link.part_result(trig.part_id) == "applied_reject")
    assert link.gate(inspection(trig, Action.REJECT)).decision.gate == "applied"


def test_a_decide_refused_as_unknown_after_the_deadline_is_a_pass_at_the_gate(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    trig = PartFactory(0.2).trigger("cam")
    link.arm(trig)
    insp = inspection(trig, Action.REJECT)
    link.emit(insp)
    copies = [peer.expect(p.Arm, timeout=1.0) for _ in range(4)]  # the 5th would be too late
    assert all(c.message.deadline_ms >= 20 for c in copies)
    peer.nak(peer.expect(p.Decide, timeout=1.0), p.NakReason.UNKNOWN_PART)
    d = link.gate(insp).decision
    assert (d.action, d.gate) == (Action.PASS, "not_delivered")  # no pulse: the part went through
    assert [f for f in peer.until_heartbeat() if isinstance(f.message, p.Arm | p.Decide)] == []
    assert link.counters["arm_copy_withheld"] == 1


def test_no_more_parts_are_armed_than_the_bridge_table_holds(peer, make_link):
    link, _ = make_link(ack_timeout_ms=250)
    handshake(peer, link)
    parts = PartFactory(10.0)
    trigs = [parts.trigger("cam") for _ in range(20)]
    for t in trigs:
        link.arm(t)
    first = arms(peer)
    assert [f.message.part_id for f in first] == [bridge_id(link, t) for t in trigs[:16]]
    link.emit(inspection(trigs[0], Action.PASS))  # decided: its entry frees once ACKed
    peer.ack(peer.expect(p.Decide))
    assert [f.message.part_id for f in arms(peer)] == [bridge_id(link, trigs[16])]
    peer.event(p.Failsafe(bridge_id(link, trigs[1]), p.FailsafeReason.DEADLINE, p.Verdict.REJECT, 5, 0))
    assert [f.message.part_id for f in arms(peer)] == [bridge_id(link, trigs[17])]
    assert link.health()["arms_waiting"] == 2 and link.health()["bridge_table"] == 16


def test_a_restarted_bridge_gets_its_parts_armed_again_and_decisions_in_flight_stay_unconfirmed(
        peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    parts = PartFactory(3.0)
    a, b = parts.trigger("cam"), parts.trigger("cam")
    link.arm(a)
    arm_a = peer.expect(p.Arm)
    peer.ack(arm_a)
    link.arm(b)
    peer.ack(peer.expect(p.Arm))
    insp_b = inspection(b, Action.REJECT)
    link.emit(insp_b)
    decide_b = peer.expect(p.Decide)  # on the wire when the bridge resets: applied or not?
    raw_b = peer.raw[-1]
    peer.event(p.Info(1, 0, 1, 0, 0, 16, 8))  # the bridge restarted (watchdog)
    assert peer.expect(p.Ack).seq == 200
    handshake(peer, link)
    got = {type(f.message).__name__: f for f in peer.frames(1.0, n=2)}
    assert got["Decide"].seq == decide_b.seq and peer.raw[-2:].count(raw_b) == 1  # byte for byte
    rearm = got["Arm"]
    assert rearm.message.part_id == bridge_id(link, a) and rearm.seq != arm_a.seq
    assert rearm.message.deadline_ms <= arm_a.message.deadline_ms  # the time left, not more
    peer.ack(rearm)
    peer.nak(got["Decide"], p.NakReason.UNKNOWN_PART)  # the restarted bridge never had it
    d = link.gate(insp_b).decision
    assert (d.action, d.gate) == (Action.REJECT, "unconfirmed")  # it may have pulsed before
    assert [f for f in peer.until_heartbeat() if isinstance(f.message, p.Arm | p.Decide)] == []
    link.emit(inspection(a, Action.PASS))
    decide_a = peer.expect(p.Decide)
    peer.ack(decide_a)
    peer.event(p.Applied(bridge_id(link, a), p.Verdict.PASS, 10, 0))
    assert link.gate(inspection(a, Action.PASS)).decision.gate == "applied"


def test_the_gate_reports_what_the_bridge_did(peer, make_link):
    link, _ = make_link(failsafe_on_heartbeat="REJECT")
    handshake(peer, link)
    parts = PartFactory(3.0)
    fs, late, quiet = parts.trigger("cam"), PartFactory(0.003).trigger("cam"), parts.trigger("cam")
    for t in (fs, quiet):
        link.arm(t)
        peer.ack(peer.expect(p.Arm))
    peer.event(p.Failsafe(bridge_id(link, fs), p.FailsafeReason.HEARTBEAT, p.Verdict.REJECT, 5, 0))
    assert peer.expect(p.Ack).seq == 200
    wait_for(lambda: link.part_result(fs.part_id) == "failsafe_heartbeat")
    insp = inspection(fs, Action.PASS)
    link.emit(insp)  # the station says PASS; the bridge already rejected it
    d = link.gate(insp).decision
    assert (d.action, d.gate) == (Action.REJECT, "failsafe_heartbeat")
    wait_for(lambda: time.monotonic() > late.deadline_mono)
    link.arm(late)  # past its deadline: never armed, so never pulsed
    insp = inspection(late, Action.REJECT)
    try:
        link.emit(insp)
    except Exception:  # noqa: BLE001 - PlcLinkError: not armed
        pass
    d = link.gate(insp).decision
    assert (d.action, d.gate) == (Action.PASS, "not_delivered")
    insp = inspection(quiet, Action.REJECT)
    link.emit(insp)
    peer.expect(p.Decide)  # no answer: the gate waits a moment, then says it does not know
    t0 = time.monotonic()
    d = link.gate(insp).decision
    assert (d.action, d.gate) == (Action.REJECT, "unconfirmed")
    assert time.monotonic() - t0 >= link.gate_wait_s * 0.9
    assert link.late_gates() == []  # nothing came after a record yet
    # the bridge's answer comes after the part was recorded: it is handed on once, for the record
    peer.event(p.Failsafe(bridge_id(link, quiet), p.FailsafeReason.DEADLINE, p.Verdict.REJECT, 9, 0))
    wait_for(lambda: link.part_result(quiet.part_id) == "failsafe_deadline")
    assert link.late_gates() == [(quiet.part_id, Action.REJECT, "failsafe_deadline")]
    assert link.late_gates() == []
