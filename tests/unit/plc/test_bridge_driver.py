"""The bridge driver against a fake bridge on a pty pair, byte for byte."""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import deque

import pytest

from edge_inspector.capture.base import PartFactory
from edge_inspector.capture.triggers import TriggerBus
from edge_inspector.envelope import Action, Decision, Inspection, Outcome, Reason
from edge_inspector.plc import protocol as p
from edge_inspector.plc.bridge import BridgeLink, PlcLinkError
from edge_inspector.plc.config import BridgeConfig


class Peer:
    """The bridge's end of the pty: reads the driver's frames, answers by hand."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.decoder = p.StreamDecoder()
        self.raw: list[bytes] = []  # every frame taken, as written (delimiter included)
        self.pending: deque[tuple[p.Frame, bytes]] = deque()  # read, not taken yet
        self.buf = b""
        self.seq = 200

    def frames(self, timeout: float = 1.0, n: int = 1) -> list[p.Frame]:
        """Up to ``n`` frames (the ones read earlier first), waiting at most ``timeout``."""
        end = time.monotonic() + timeout
        while len(self.pending) < n and time.monotonic() < end:
            if not select.select([self.master], [], [], 0.01)[0]:
                continue
            self.buf += os.read(self.master, 4096)
            while b"\x00" in self.buf:
                chunk, self.buf = self.buf.split(b"\x00", 1)
                if chunk:
                    raw = chunk + b"\x00"
                    self.pending.extend((f, raw) for f in self.decoder.feed(raw))
        out = []
        while self.pending and len(out) < n:
            frame, raw = self.pending.popleft()
            self.raw.append(raw)
            out.append(frame)
        return out

    def expect(self, cls: type[p.Message], timeout: float = 1.0) -> p.Frame:
        """The next frame, skipping heartbeats and status requests; it must be a ``cls``."""
        end = time.monotonic() + timeout
        while True:
            got = self.frames(max(0.0, end - time.monotonic()))
            assert got, f"no {cls.__name__} from the driver"
            frame = got[0]
            if isinstance(frame.message, p.Heartbeat | p.StatusRequest) and not isinstance(
                    frame.message, cls):
                self.ack(frame)
                continue
            assert isinstance(frame.message, cls), frame
            return frame

    def silent(self, seconds: float) -> list[p.Frame]:
        return self.frames(seconds, n=10**6)

    def until_heartbeat(self, timeout: float = 10.0) -> list[p.Frame]:
        """The frames before the driver's next HEARTBEAT (it comes after a third of the heartbeat
        timeout with nothing else to send): a marker that the driver had nothing else to say,
        whatever the machine's speed. Heartbeats and status requests are ACKed."""
        end, before = time.monotonic() + timeout, []
        while True:
            got = self.frames(max(0.0, end - time.monotonic()))
            assert got, f"no HEARTBEAT within {timeout} s; before it: {before}"
            frame = got[0]
            if isinstance(frame.message, p.Heartbeat | p.StatusRequest):
                self.ack(frame)
                if isinstance(frame.message, p.Heartbeat):
                    return before
                continue
            before.append(frame)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def ack(self, frame: p.Frame) -> None:
        self.write(p.encode_frame(frame.seq, p.Ack()))

    def nak(self, frame: p.Frame, reason: p.NakReason) -> None:
        self.write(p.encode_frame(frame.seq, p.Nak(reason)))

    def event(self, msg: p.Message) -> bytes:
        raw = p.encode_frame(self.seq, msg)
        self.seq = p.seq_next(self.seq)
        self.write(raw)
        return raw

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(autouse=True)
def _threads_joined(no_thread_left):
    """Every thread a test starts is joined by its teardown (tests/conftest.py)."""


def wait_for(cond, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.002)


@pytest.fixture
def peer():
    peer = Peer()
    yield peer
    peer.close()


@pytest.fixture
def make_link(peer):
    links = []

    def make(**kw) -> tuple[BridgeLink, TriggerBus]:
        bus = TriggerBus()
        cfg = BridgeConfig(**{"port": peer.path, "boot_wait_ms": 0, "reject_pulse_ms": 40,
                              "heartbeat_timeout_ms": 900, "ack_timeout_ms": 50,
                              "status_interval_s": 60.0, **kw})
        link = BridgeLink(cfg, triggers=bus, stall_timeout_s=kw.pop("stall", 5.0))
        links.append(link)
        link.start()
        return link, bus

    yield make
    for link in links:
        link.close()
        assert link._thread is None


def handshake(peer: Peer, link: BridgeLink) -> None:
    hello = peer.expect(p.Hello)
    assert hello.message == p.Hello(1, 0, 1, 0, link.session)
    peer.ack(hello)
    config = peer.expect(p.Config)
    assert peer.raw[-1] == p.encode_frame(config.seq, p.Config(40, 900, p.Verdict.REJECT,
                                                               p.Verdict.REJECT))
    peer.ack(config)
    wait_for(lambda: link.state == "ready")


def inspection(trigger, action: Action) -> Inspection:
    d = Decision(trigger.part_id, Outcome(action.value), action, Reason.OK, "", {}, time.monotonic(),
                 False)
    return Inspection(trigger.frame(None, error="test"), d)


def test_handshake_then_arm_and_decide_byte_for_byte(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    parts = PartFactory(1.0)
    trig = parts.trigger("cam")
    link.arm(trig)
    arm = peer.expect(p.Arm)
    seen = time.monotonic()
    bridge_id = (link._id_base + trig.seq) & 0xFFFFFFFF
    assert arm.message.part_id == bridge_id
    # the time left when it was built (before we saw it), less the 5 ms margin; however long that took
    assert (trig.deadline_mono - seen) * 1000 - 5 - 1 <= arm.message.deadline_ms <= 995
    peer.ack(arm)
    link.emit(inspection(trig, Action.REJECT))
    decide = peer.expect(p.Decide)
    assert peer.raw[-1] == p.encode_frame(decide.seq, p.Decide(bridge_id, p.Verdict.REJECT))
    assert decide.seq == p.seq_next(arm.seq)
    peer.ack(decide)
    peer.event(p.Applied(bridge_id, p.Verdict.REJECT, 100, 0))
    ack = peer.expect(p.Ack)
    assert ack.seq == 200
    wait_for(lambda: link.part_result(trig.part_id) == "applied_reject")
    with pytest.raises(PlcLinkError, match="already decided"):
        link.emit(inspection(trig, Action.PASS))
    assert peer.until_heartbeat() == []  # no second DECIDE, ever


def test_decide_waits_for_the_arm_answer_and_unanswered_frames_are_resent_identically(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    trig = PartFactory(1.0).trigger("cam")
    link.arm(trig)
    arm = peer.expect(p.Arm)
    link.emit(inspection(trig, Action.PASS))
    again = peer.expect(p.Arm, timeout=0.2)  # no DECIDE before the ARM is answered
    # the ARM again, same seq, with the time left now: whichever copy the bridge takes, its
    # fail-safe comes by the station's deadline (a byte-for-byte copy would set it later)
    assert again.seq == arm.seq and again.message.part_id == arm.message.part_id
    assert again.message.deadline_ms <= arm.message.deadline_ms - 40
    peer.ack(again)
    decide = peer.expect(p.Decide)
    raw = peer.raw[-1]
    for _ in range(4):  # 5 transmissions in all, byte for byte, then given up
        assert peer.expect(p.Decide, timeout=1.0).seq == decide.seq and peer.raw[-1] == raw
    wait_for(lambda: link.part_result(trig.part_id) == "lost")
    assert [f for f in peer.until_heartbeat() if isinstance(f.message, p.Decide)] == []
    assert link.t.stats["tx_lost"] == 1


def test_at_most_eight_frames_unanswered(peer, make_link):
    link, _ = make_link(ack_timeout_ms=250)
    handshake(peer, link)
    parts = PartFactory(5.0)
    triggers = [parts.trigger("cam") for _ in range(10)]
    for t in triggers:
        link.arm(t)
    got: dict[int, p.Frame] = {}
    while True:  # until the first ARM comes again: by then the driver had time for a ninth
        (f,) = peer.frames(5.0) or [None]
        assert f is not None, "no retransmission of the first ARM"
        if not isinstance(f.message, p.Arm):
            continue
        if got and f.seq == next(iter(got)):
            break
        got.setdefault(f.seq, f)
    assert len(got) == 8, sorted(got)
    first = list(got.values())
    peer.ack(first[0])
    peer.ack(first[1])
    more: set[int] = set()
    end = time.monotonic() + 5.0
    while len(more) < 2 and time.monotonic() < end:  # the two that now fit in the window
        more |= {f.seq for f in peer.frames(0.5) if isinstance(f.message, p.Arm) and f.seq not in got}
    assert len(more) == 2


def test_triggers_become_bus_events_once_and_are_acked_every_time(peer, make_link):
    link, bus = make_link()
    handshake(peer, link)
    raw = peer.event(p.Trigger(1, 5000, 250))
    assert peer.expect(p.Ack).seq == 200
    peer.write(raw)  # a retransmission: same seq, same CRC
    assert peer.expect(p.Ack).seq == 200
    event = bus.wait(5.0)
    assert (event.origin, event.device_ts, event.device_seq) == ("bridge", 5_000_250, 1)
    peer.event(p.Trigger(3, 5100, 0))  # trigger 2 was lost on the bridge side
    assert peer.expect(p.Ack).seq == 201
    assert bus.wait(5.0).device_seq == 3  # the next event: the retransmission made none
    wait_for(lambda: link.counters["triggers_missed"] == 1)


def test_garbled_frames_are_dropped_and_invalid_ones_nakked(peer, make_link):
    link, bus = make_link()
    handshake(peer, link)
    good = bytearray(p.encode_frame(7, p.Trigger(1, 1, 1)))
    good[3] ^= 0x40  # bad CRC: dropped silently (its seq cannot be trusted)
    peer.write(bytes(good))
    wait_for(lambda: link.t.decoder.bad_frames == 1)
    assert bus.pending == 0  # never answered: the NAK below is the next frame (seq 9)
    body = bytes((p.MsgType.TRIGGER, 9)) + b"\x01" * 9  # one byte short
    raw = body + p.crc16_ccitt_false(body).to_bytes(2, "little")
    peer.write(p.cobs_encode(raw) + b"\x00")
    nak = peer.expect(p.Nak)
    assert nak.seq == 9 and nak.message.reason == p.NakReason.BAD_LENGTH
    peer.write(p.encode_frame(10, p.Decide(1, p.Verdict.REJECT)))  # wrong direction
    nak = peer.expect(p.Nak)
    assert nak.seq == 10 and nak.message.reason == p.NakReason.UNKNOWN_TYPE
    peer.write(b"\xff" * 100 + b"\x00")  # noise
    peer.event(p.Trigger(1, 2, 3))  # then a good frame: handled after the noise
    assert peer.expect(p.Ack).seq == 200
    assert bus.wait(5.0).device_seq == 1 and bus.pending == 0  # the noise made no event
    assert link.state == "ready"


def test_refused_decide_is_not_retried_and_bridge_restart_rehandshakes(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    trig = PartFactory(1.0).trigger("cam")
    link.arm(trig)
    peer.ack(peer.expect(p.Arm))
    link.emit(inspection(trig, Action.PASS))
    peer.nak(peer.expect(p.Decide), p.NakReason.PART_FAILSAFED)
    wait_for(lambda: link.part_result(trig.part_id) == "refused_part_failsafed")
    assert [f for f in peer.until_heartbeat() if isinstance(f.message, p.Decide)] == []
    peer.event(p.Info(1, 0, 1, 0, 0, 16, 8))  # restarted (watchdog)
    assert peer.expect(p.Ack).seq == 200
    handshake(peer, link)
    assert link.counters["bridge_restarts"] == 1


def test_no_heartbeat_while_the_loop_is_stuck(peer, make_link):
    progress = [time.monotonic()]
    link, _ = make_link(stall_timeout_ms=150)
    link.progress = lambda: progress[0]
    handshake(peer, link)
    hb = peer.expect(p.Heartbeat, timeout=0.5)  # a third of 900 ms of silence
    peer.ack(hb)
    trig = PartFactory(5.0).trigger("cam")
    link.arm(trig)  # a part waits, and the loop makes no progress
    peer.ack(peer.expect(p.Arm))
    wait_for(lambda: link.t.quiet, timeout=5.0)
    tx = link.t.stats["tx_frames"]
    peer.event(p.Trigger(1, 1, 1))  # not even an ACK: it would count as a heartbeat
    peer.event(p.Trigger(2, 2, 2))
    wait_for(lambda: link.counters["triggers"] == 2)  # both handled, in order: no ACK for the first
    assert link.t.stats["tx_frames"] == tx
    assert peer.silent(0.6) == []  # and no heartbeat for two of its periods
    link.emit(inspection(trig, Action.PASS))  # the loop moves again: HELLO, CONFIG, then DECIDE
    handshake(peer, link)
    assert peer.expect(p.Decide).message.part_id == (link._id_base + trig.seq) & 0xFFFFFFFF


def test_a_part_armed_too_late_is_not_decided(peer, make_link):
    link, _ = make_link()
    handshake(peer, link)
    trig = PartFactory(0.003).trigger("cam")  # deadline within the arm margin
    wait_for(lambda: time.monotonic() > trig.deadline_mono)
    link.arm(trig)
    with pytest.raises(PlcLinkError, match="not armed"):
        link.emit(inspection(trig, Action.REJECT))
    assert [f for f in peer.until_heartbeat() if isinstance(f.message, p.Arm | p.Decide)] == []


def test_port_that_cannot_be_opened_is_named(tmp_path):
    cfg = BridgeConfig(port=str(tmp_path / "ttyACM9"), boot_wait_ms=0, reconnect_backoff_s=0.05,
                       reconnect_max_s=0.1)
    link = BridgeLink(cfg)
    link.start()
    try:
        wait_for(lambda: link.last_error is not None)
        assert link.state == "reconnecting" and str(tmp_path / "ttyACM9") in link.last_error
    finally:
        link.close()


def test_an_event_for_a_part_of_a_previous_run_is_logged_and_the_link_lives_on(peer, make_link):
    """After a SIGKILL and restart the bridge still sends the FAILSAFE events of the killed run's
    parts: unknown to the new host. Logging one raised TypeError (a keyword named ``event``) and
    killed the I/O thread: no part was armed or decided after it (found by tools/soak.py)."""
    link, bus = make_link()
    handshake(peer, link)
    peer.event(p.Failsafe(0x12345678, p.FailsafeReason.HEARTBEAT, p.Verdict.REJECT, 10, 0))
    assert peer.expect(p.Ack).seq == 200
    wait_for(lambda: link.counters["unknown_part_events"] == 1)
    trig = PartFactory(2.0).trigger("cam")
    link.arm(trig)  # the link still works
    peer.ack(peer.expect(p.Arm))
    link.emit(inspection(trig, Action.REJECT))
    decide = peer.expect(p.Decide)
    assert decide.message.verdict is p.Verdict.REJECT
    assert link._thread is not None and link._thread.is_alive() and link.counters["io_errors"] == 0
