"""The firmware bridge's host driver: an :class:`Output` (DECIDE for each decided part) and a trigger
producer (TRIGGER events become parts on the capture stage's TriggerBus).

Per part: ``arm(trigger)`` is called where the part is made (the daemon's part factory hook) and
sends ARM with the time left to the part's deadline (less ``arm_margin_ms``), so the bridge applies
its fail-safe by then if no decision comes; ``emit(inspection)`` sends DECIDE with the decision's
gate action once the ARM was answered; ``gate(inspection)`` says what the gate did with it (the
bridge's APPLIED, its FAILSAFE, or nothing), so that the store and MQTT record the gate's action.
Rules that keep actuation right:

- a DECIDE names the bridge's part id made from the station's part sequence (plus a random base
  per run), so it can only act on the part it belongs to; it is retransmitted byte for byte only
  (the bridge's duplicate history re-ACKs and never applies twice); it is sent again as a new frame
  only after the bridge refused it as an unknown part (so it was not applied);
- at most ``max_pending`` parts (the bridge's table, from its INFO) are armed at once: further ARMs
  wait, in order, for an entry to free, so the bridge never refuses one as TABLE_FULL;
- an ARM carries the time left when it leaves, its retransmissions too (same seq, the time left
  then: a copy resent byte for byte would set the bridge's deadline from when that copy arrives,
  up to (max_tx - 1) x ack_timeout late); so whichever copy the bridge takes, its fail-safe comes
  by the station's deadline less the margin;
- an ARM whose answer never came ("uncertain": line noise, a stall, a restart) is sent again as a
  new ARM with the time left, only while that cannot arm a part the bridge already finished
  (``_rearm_refusal``): no DECIDE went out for it, no heartbeat loss at the bridge may have
  fail-safed it unseen, and it lands before the fail-safe of any earlier copy could fire;
- a station that cannot record (a failed store write) tells the bridge (STATION code 3: READY
  off, FAULT on, fault code 3) while parts are still armed and decided (their NO-READ fail-safe is
  pulsed); code 0 when it records again, and again after every CONFIG (which clears it);
- no heartbeat while the inspection loop is stuck: with a part waiting and no progress for
  ``stall_timeout``, the link goes quiet (no frame at all) and the bridge raises FAULT;
- a lost port is reopened with back-off, and every (re)connection, bridge restart or FAULT is
  followed by HELLO and CONFIG before anything else is sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from edge_inspector.capture.base import Trigger
from edge_inspector.capture.triggers import TriggerBus
from edge_inspector.envelope import Action, Inspection
from edge_inspector.outputs.base import Output
from edge_inspector.plc.arming import TABLE_SIZE, Part, PartTable
from edge_inspector.plc.config import BridgeConfig
from edge_inspector.plc.link import Transport
from edge_inspector.plc.session import BridgeSession

log = structlog.get_logger(__name__)

NOT_AT_GATE = ("undelivered", "refused_unknown_part", "refused_bad_value", "refused_table_full",
               "refused_not_configured")


CLOSE_WAIT_S = 2.0  # at shutdown, the longest wait for the gate's answers to the last decisions


class PlcLinkError(RuntimeError):
    """A decision that could not be delivered to the bridge; the message says why."""


class BridgeLink(PartTable, BridgeSession, Output):
    name = "plc"

    def __init__(self, cfg: BridgeConfig, *, triggers: TriggerBus | None = None,
                 stall_timeout_s: float = 3.0) -> None:
        self.cfg = cfg
        self.triggers = triggers
        self.stall_timeout_s = (cfg.stall_timeout_ms / 1000) if cfg.stall_timeout_ms else stall_timeout_s
        self.session = random.randrange(1, 2**32)
        self._id_base = random.randrange(2**32)
        self.t = Transport(cfg.port, cfg.baud, ack_timeout_s=cfg.ack_timeout_ms / 1000,
                           max_tx=cfg.max_transmissions, on_event=self._on_event)
        self.progress: Callable[[], float] | None = None  # the inspection loop's last progress
        self.recording_fault: Callable[[], str | None] | None = None  # why the station cannot record
        self._station_sent = 0  # the station fault code the bridge has ACKed since the last CONFIG
        self._station_inflight = False
        self.state = "stopped"
        self.counters: Counter[str] = Counter()
        self.bridge: dict[str, Any] = {}
        self.last_error: str | None = None
        self.decide_to_applied_ms: float | None = None
        self.max_pending = TABLE_SIZE
        self.gate_wait_s = (cfg.gate_wait_ms / 1000 if cfg.gate_wait_ms is not None  # DECIDE -> APPLIED
                            else 2 * cfg.ack_timeout_ms / 1000 + 0.05)  # one resend
        self._parts: OrderedDict[str, Part] = OrderedDict()
        self._by_id: dict[int, Part] = {}
        self._table: set[Part] = set()  # parts that may hold an entry of the bridge's table
        self._waiting: deque[Part] = deque()  # ARMs held back until an entry frees
        self._rearm: set[Part] = set()  # uncertain or lost parts to arm again once that is safe
        self._late: list[tuple[str, Action, str]] = []  # gate answers after an unconfirmed record
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_emit = 0.0
        self._hs_gen = 0
        self._opened = 0.0
        self._last_status = 0.0
        self._last_trigger_count: int | None = None
        self._was_ready = False  # ready at least once since the port was opened
        self._rehandshake: str | None = None  # why HELLO and CONFIG must be sent again (I/O thread)
        self._blind_at = float("-inf")  # a port outage long enough for a heartbeat loss ended here
        self._hb_lost_at = float("-inf")  # the bridge last reported a heartbeat loss

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, progress: Callable[[], float] | None = None,
              recording_fault: Callable[[], str | None] | None = None) -> None:
        """Start the I/O thread (it opens the port and keeps it open). Never blocks.
        ``recording_fault``: why the station cannot record now (None: it can); while it says so,
        the bridge is told (STATION FAULT: READY off, FAULT on) and goes on applying decisions."""
        if progress is not None:
            self.progress = progress
        if recording_fault is not None:
            self.recording_fault = recording_fault
        if self._thread is None:
            # the bridge's part ids are (base + the station's part seq) mod 2**32: with this line a
            # wire log (tools/soak.py) is matched to the rows
            log.info("plc_part_ids", port=self.cfg.port, session=self.session, id_base=self._id_base)
            self._stop.clear()
            self.state = "connecting"
            self._thread = threading.Thread(target=self._run, name="plc-bridge", daemon=True)
            self._thread.start()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            # let the last decisions be answered: their frames ACKed (0.3 s at most), and the
            # gate's answer (APPLIED or the fail-safe, which comes by the part's deadline) heard,
            # so that a part recorded 'unconfirmed' is corrected as the outputs close (2 s at most)
            now = time.monotonic()
            acks, cap = now + 0.3, now + CLOSE_WAIT_S
            while self.t.connected and now < cap and (
                    (self.t.unanswered and now < acks) or self._decided_unanswered(now)):
                time.sleep(0.005)
                now = time.monotonic()
            self._stop.set()
            thread.join(timeout=5)
        self.t.drop_all()
        self.t.close()
        self.state = "stopped"

    # -- the station's side ----------------------------------------------------------------------
    def arm(self, trigger: Trigger) -> None:
        """A part was made: ARM it at the bridge with its deadline (from the capture thread)."""
        self._new_part(trigger.part_id, trigger.seq, trigger.t_mono, trigger.deadline_mono)

    def emit(self, inspection: Inspection) -> None:
        f, d = inspection.frame, inspection.decision
        self._last_emit = time.monotonic()
        with self._lock:
            part = self._parts.get(f.part_id)
        if part is None:  # made without the arm hook: arm it now, then decide
            part = self._new_part(f.part_id, f.seq, f.trigger_mono, f.deadline_mono)
        with self._lock:
            if part.action is not None:
                raise PlcLinkError(f"part {f.part_id} was already decided; second decision ignored")
            part.action = d.action
            arm = part.arm
            undelivered = arm == "refused" or (arm == "gone" and part not in self._rearm)
        if arm in ("armed", "uncertain"):  # uncertain: the bridge refuses it unless it holds it
            self._send_decide(part)
        elif undelivered:
            self._finish(part, "undelivered")
            raise PlcLinkError(f"part {f.part_id} is not armed at the bridge on {self.cfg.port} "
                               f"({self.state}); its {d.action} was not sent")
        # else: the ARM is waiting or on its way; DECIDE follows its answer (_arm_answered)

    def gate(self, inspection: Inspection) -> Inspection:
        """The inspection as the gate applied it: ``action`` is what the gate did (the bridge's
        APPLIED, its fail-safe, or PASS when the bridge never had the part: no pulse), ``gate``
        says how. Waits up to ``gate_wait_s`` for the bridge's answer to the DECIDE."""
        d = inspection.decision
        with self._lock:
            part = self._parts.get(inspection.frame.part_id)
        if part is None:
            return replace(inspection, decision=replace(d, gate="unconfirmed"))
        if self.t.connected and not part.done.is_set():
            part.done.wait(self.gate_wait_s)
        elif not self.t.connected and self._give_up_unsent(part):
            # the port is down and no ARM of it ever left: the bridge never had the part, and the
            # decision is given up now (never sent later), so "no pulse" is what the gate does
            self._finish(part, "undelivered")
            log.error("plc_decision_undelivered", port=self.cfg.port, part_id=part.key,
                      action=str(d.action), why=f"the port is down ({self.state}): never armed")
        with self._lock:
            result = part.result
        action, how = self._gate_of(part, result, d.action)
        if how == "unconfirmed":
            part.recorded_unconfirmed = True
            self.counters["gate_unconfirmed"] += 1
        elif action is not d.action:
            self.counters["gate_overrode_decision"] += 1
            log.warning("plc_gate_differs", port=self.cfg.port, part_id=part.key,
                        decided=str(d.action), gate=str(action), how=how)
        return replace(inspection, decision=replace(d, action=action, gate=how))

    def _decided_unanswered(self, now: float) -> bool:
        with self._lock:
            return any(x.action is not None and x.result is None and now < x.deadline_mono + 0.1
                       for x in self._parts.values())

    def late_gates(self) -> list[tuple[str, Action, str]]:
        with self._lock:
            late, self._late = self._late, []
        return late

    def _give_up_unsent(self, part: Part) -> bool:
        """Whether ``part`` was still open and no ARM of it was ever transmitted; if so it is
        finished as undelivered, so that none ever will be (its queued ARM builds nothing)."""
        with self._lock:
            if part.result is not None or part.arm_first_tx is not None or part.arm not in (
                    "waiting", "queued"):
                return False
            part.arm = "refused"  # not at the bridge, and never to be: no ARM, no DECIDE
            part.result = "undelivered"  # under the lock: the ARM's builder sees it (_arm_message)
            self._rearm.discard(part)
            return True

    def _gate_of(self, part: Part, result: str | None, decided: Action) -> tuple[Action, str]:
        if result in ("applied_pass", "applied_reject"):
            return (Action.REJECT if result == "applied_reject" else Action.PASS), "applied"
        if result == "failsafe_deadline":
            return self.cfg.failsafe_on_deadline, result
        if result == "failsafe_heartbeat":
            return self.cfg.failsafe_on_heartbeat, result
        if result == "refused_part_failsafed":  # the FAILSAFE event did not say which (yet)
            late = part.arm_tx is not None and part.arm_deadline_ms is not None and (
                time.monotonic() >= part.arm_tx + part.arm_deadline_ms / 1000)
            return ((self.cfg.failsafe_on_deadline, "failsafe_deadline") if late
                    else (self.cfg.failsafe_on_heartbeat, "failsafe_heartbeat"))
        if result in NOT_AT_GATE:
            return Action.PASS, "not_delivered"  # the bridge never had the part: no pulse
        return decided, "unconfirmed"  # lost, or no answer yet: the DECIDE may have acted

    def health(self) -> dict[str, Any]:
        with self._lock:
            pending = sum(1 for x in self._parts.values() if x.result is None)
            table, waiting = len(self._table), len(self._waiting)
        return {"name": self.name, "kind": "bridge", "port": self.cfg.port, "state": self.state,
                "quiet": self.t.quiet, "station_fault": self._station_sent, "last_error": self.last_error, "parts_open": pending,
                "bridge_table": table, "arms_waiting": waiting,
                "decide_to_applied_ms": self.decide_to_applied_ms, "bridge": dict(self.bridge),
                **self.counters, **{f"link_{k}": v for k, v in self.t.stats.items()},
                "rx_bad_frames": self.t.decoder.bad_frames,
                "rx_bad_messages": self.t.decoder.bad_messages}

    def part_result(self, part_id: str) -> str | None:
        part = self.part(part_id)
        return part.result if part else None

    def part(self, part_id: str) -> Part | None:
        """What the link knows of a recent part (the last 1024, for a minute after its deadline)."""
        with self._lock:
            part = self._parts.get(part_id)
            return replace(part) if part else None

