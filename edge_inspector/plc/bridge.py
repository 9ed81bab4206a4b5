"""The firmware bridge's host driver: an :class:`Output` (DECIDE for each decided part) and a trigger
producer (TRIGGER events become parts on the capture stage's TriggerBus).

Per part: ``arm(trigger)`` is called where the part is made (the daemon's part factory hook) and
sends ARM with the time left to the part's deadline (less ``arm_margin_ms``), so the bridge applies
its fail-safe by then if no decision comes; ``emit(inspection)`` sends DECIDE with the decision's
gate action once the ARM was answered. Rules that keep actuation right:

- a DECIDE names the bridge's part id made from the station's part sequence (plus a random base
  per run), so it can only act on the part it belongs to; it is retransmitted byte for byte only
  (the bridge's duplicate history re-ACKs and never applies twice), never re-sent as a new frame;
- an ARM that may have reached the bridge is never sent again as a new frame (the bridge might
  have finished the part already); a part whose ARM is uncertain still gets its DECIDE, which the
  bridge refuses (NAK) unless the part is pending there;
- no heartbeat while the inspection loop is stuck: with a part waiting and no progress for
  ``stall_timeout``, the link goes quiet (no frame at all) and the bridge raises FAULT;
- a lost port is reopened with back-off, and every (re)connection, bridge restart or FAULT is
  followed by HELLO and CONFIG before anything else is sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from edge_inspector.capture.base import Trigger
from edge_inspector.capture.triggers import TriggerBus
from edge_inspector.envelope import Action, Inspection
from edge_inspector.outputs.base import Output
from edge_inspector.plc import protocol as p
from edge_inspector.plc.config import BridgeConfig
from edge_inspector.plc.link import DROPPED, LOST, Answer, Outgoing, Transport
from edge_inspector.plc.session import BridgeSession, verdict_of

log = structlog.get_logger(__name__)

MAX_PARTS = 1024


class PlcLinkError(RuntimeError):
    """A decision that could not be delivered to the bridge; the message says why."""


@dataclass(eq=False)
class Part:
    key: str  # the station's part id
    bridge_id: int
    trigger_mono: float
    deadline_mono: float
    arm: str = "queued"  # queued -> sent -> armed | refused | uncertain
    action: Action | None = None  # the decision, once emitted
    decide_sent: float | None = None
    result: str | None = None  # applied_pass/applied_reject/failsafe_*/refused_*/lost/undelivered
    arm_deadline_ms: int | None = None  # as sent in the ARM
    bridge_us: int | None = None  # the MCU's time of APPLIED / FAILSAFE (us since its boot)


class BridgeLink(BridgeSession, Output):
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
        self.state = "stopped"
        self.counters: Counter[str] = Counter()
        self.bridge: dict[str, Any] = {}
        self.last_error: str | None = None
        self.decide_to_applied_ms: float | None = None
        self._parts: OrderedDict[str, Part] = OrderedDict()
        self._by_id: dict[int, Part] = {}
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

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, progress: Callable[[], float] | None = None) -> None:
        """Start the I/O thread (it opens the port and keeps it open). Never blocks."""
        if progress is not None:
            self.progress = progress
        if self._thread is None:
            self._stop.clear()
            self.state = "connecting"
            self._thread = threading.Thread(target=self._run, name="plc-bridge", daemon=True)
            self._thread.start()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            end = time.monotonic() + 0.3  # let the last decisions be answered
            while self.t.unanswered and self.t.connected and time.monotonic() < end:
                time.sleep(0.005)
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
        now = time.monotonic()
        self._last_emit = now
        with self._lock:
            part = self._parts.get(f.part_id)
        if part is None:  # made without the arm hook: arm it now, then decide
            part = self._new_part(f.part_id, f.seq, f.trigger_mono, f.deadline_mono)
        with self._lock:
            if part.action is not None:
                raise PlcLinkError(f"part {f.part_id} was already decided; second decision ignored")
            part.action = d.action
            go = part.arm in ("armed", "uncertain")
            refused = part.arm == "refused"
        if go:
            self._send_decide(part)
        elif refused:
            self._finish(part, "undelivered")
            raise PlcLinkError(f"part {f.part_id} is not armed at the bridge on {self.cfg.port} "
                               f"({self.state}); its {d.action} was not sent")
        # else: the ARM is still on its way; DECIDE follows its answer (_arm_answered)

    def health(self) -> dict[str, Any]:
        with self._lock:
            pending = sum(1 for x in self._parts.values() if x.result is None)
        return {"name": self.name, "kind": "bridge", "port": self.cfg.port, "state": self.state,
                "quiet": self.t.quiet, "last_error": self.last_error, "parts_open": pending,
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

    # -- parts -----------------------------------------------------------------------------------
    def _new_part(self, key: str, seq: int, t_mono: float, deadline: float) -> Part:
        part = Part(key, (self._id_base + seq) & 0xFFFFFFFF, t_mono, deadline)
        with self._lock:
            self._parts[key] = part
            self._by_id[part.bridge_id] = part
            self._prune(time.monotonic())
        self.t.send(Outgoing(build=lambda: self._arm_message(part),
                             on_answer=lambda a: self._arm_answered(part, a),
                             wanted=lambda: False))  # never resent after an outage: uncertain
        return part

    def _arm_message(self, part: Part) -> p.Message | None:
        left_ms = int((part.deadline_mono - time.monotonic()) * 1000 - self.cfg.arm_margin_ms)
        if left_ms < 1:
            self.counters["arm_too_late"] += 1
            return None
        part.arm, part.arm_deadline_ms = "sent", min(left_ms, 60000)
        return p.Arm(part.bridge_id, part.arm_deadline_ms)

    def _arm_answered(self, part: Part, answer: Answer) -> None:
        with self._lock:
            if answer is None or answer is p.NakReason.DUPLICATE_PART:
                part.arm = "armed"
                self.counters["armed"] += 1
            elif answer is LOST or (answer is DROPPED and part.arm == "sent"):
                part.arm = "uncertain"  # it may have reached the bridge: never ARM it again
                self.counters["arm_uncertain"] += 1
            elif answer is p.NakReason.NOT_CONFIGURED and part.arm == "sent":
                part.arm = "queued"  # refused, so not applied: safe to ask again after CONFIG
            else:
                part.arm = "refused"
                self.counters["arm_refused"] += 1
            arm, action = part.arm, part.action
        if arm == "queued":
            self.t.send(Outgoing(build=lambda: self._arm_message(part),
                                 on_answer=lambda a: self._arm_answered(part, a),
                                 wanted=lambda: False))
            self._rehandshake = "ARM refused: bridge not configured"
            return
        if arm == "refused":
            log.warning("plc_arm_refused", port=self.cfg.port, part_id=part.key,
                        reason=getattr(answer, "name", answer))
        if action is None:
            return
        if arm == "refused":
            self._finish(part, "undelivered")
            log.error("plc_decision_undelivered", port=self.cfg.port, part_id=part.key,
                      action=str(action), why="the part is not armed at the bridge")
        else:
            self._send_decide(part)

    def _send_decide(self, part: Part) -> None:
        def build() -> p.Message:
            part.decide_sent = time.monotonic()
            return p.Decide(part.bridge_id, verdict_of(part.action))

        self.counters["decide_sent"] += 1
        self.t.send(Outgoing(build=build, on_answer=lambda a: self._decide_answered(part, a),
                             wanted=lambda: True))  # resent byte for byte only: never twice applied

    def _decide_answered(self, part: Part, answer: Answer) -> None:
        if answer is None:
            return  # APPLIED follows
        what = getattr(answer, "name", str(answer)).lower()
        self._finish(part, "lost" if answer in (LOST, DROPPED) else f"refused_{what}")
        log.warning("plc_decide_not_applied", port=self.cfg.port, part_id=part.key,
                    action=str(part.action), answer=what)

    def _finish(self, part: Part, result: str) -> None:
        with self._lock:
            if part.result is None or part.result.startswith("refused") and result.startswith(
                    ("failsafe", "applied")):
                part.result = result
        self.counters[result] += 1

    def _prune(self, now: float) -> None:
        while len(self._parts) > MAX_PARTS or (
                self._parts and next(iter(self._parts.values())).deadline_mono < now - 60):
            _, old = self._parts.popitem(last=False)
            self._by_id.pop(old.bridge_id, None)
