"""The bridge driver's parts (a mixin of :class:`~edge_inspector.plc.bridge.BridgeLink`): ARM
each part within the bridge's table, arm again what may not be armed, DECIDE, and follow each part
to what the gate did. The rules are in :mod:`edge_inspector.plc.bridge`'s docstring.

Locks: the bridge's lock (``_lock``) guards the parts; the transport's lock may be held when a
builder here takes it, so nothing here calls the transport while holding ``_lock``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import structlog

from edge_inspector.envelope import Action
from edge_inspector.plc import protocol as p
from edge_inspector.plc.link import DROPPED, LOST, Answer, Outgoing
from edge_inspector.plc.session import verdict_of

log = structlog.get_logger(__name__)

MAX_PARTS = 1024
TABLE_SIZE = 16  # the bridge's pending table until its INFO says otherwise (PROTOCOL.md)
EVENTS_SETTLE_S = 0.25  # after a heartbeat-loss report, the bridge's FAILSAFE events have arrived
ARM_GUARD_MS = 20  # an ARM (or a copy of one) leaves with at least this much time left, to land
# at the bridge before the fail-safe of any earlier copy could fire
HEARTBEAT_SETTLING = "the bridge lost the heartbeat: its FAILSAFE events are still coming"


@dataclass(eq=False)
class Part:
    key: str  # the station's part id
    bridge_id: int
    trigger_mono: float
    deadline_mono: float
    # waiting (for a table entry or a re-arm) -> queued -> sent -> armed | refused | uncertain;
    # gone: the bridge restarted and lost it
    arm: str = "waiting"
    action: Action | None = None  # the decision, once emitted
    decide_queued: bool = False  # a DECIDE is queued or on the wire
    decide_sent: float | None = None  # its (first) transmission
    decide_acked: bool = False
    decide_unknown: bool = False  # a DECIDE was refused UNKNOWN_PART: not applied, not pending
    decide_before_restart: bool = False  # sent before a bridge restart: applied or not, unknown
    result: str | None = None  # applied_pass/applied_reject/failsafe_*/refused_*/lost/undelivered
    arm_deadline_ms: int | None = None  # as sent in the (last) ARM
    arm_first_tx: float | None = None  # the first ARM's transmission
    arm_tx: float | None = None  # the last ARM's transmission
    rearms: int = 0
    bridge_us: int | None = None  # the MCU's time of APPLIED / FAILSAFE (us since its boot)
    recorded_unconfirmed: bool = False  # gate() answered before the bridge did
    done: threading.Event = field(default_factory=threading.Event)  # result is known


class _ArmOutgoing(Outgoing):
    """An ARM frame whose retransmissions carry the time left (``BridgeLink._arm_copy``); the first
    transmission is the one built."""

    def __init__(self, link: PartTable, part: Part) -> None:
        self._link, self._part, self._raw = link, part, b""
        super().__init__(build=lambda: link._arm_message(part),
                         on_answer=lambda a: link._arm_answered(part, a),
                         wanted=lambda: False)  # never resent after an outage: uncertain

    @property  # type: ignore[override]
    def raw(self) -> bytes:
        if self.tries <= 1 or not self._raw:
            return self._raw
        return self._link._arm_copy(self._part, self.seq)

    @raw.setter
    def raw(self, value: bytes) -> None:
        self._raw = value


class PartTable:
    """ARM, re-ARM and DECIDE per part; BridgeLink provides cfg, t, counters and the lock."""

    # -- arming ----------------------------------------------------------------------------------
    def _new_part(self, key: str, seq: int, t_mono: float, deadline: float) -> Part:
        part = Part(key, (self._id_base + seq) & 0xFFFFFFFF, t_mono, deadline)
        with self._lock:
            self._parts[key] = part
            self._by_id[part.bridge_id] = part
            self._prune(time.monotonic())
            self._waiting.append(part)
        self._pump_arms()
        return part

    def _holds_entry(self, part: Part, now: float) -> bool:
        """Whether ``part`` may hold an entry of the bridge's table (under the lock)."""
        if part.result is not None or part.decide_acked or part.arm in ("refused", "gone", "waiting"):
            return False
        if part.arm_tx is None or part.arm_deadline_ms is None:
            return True  # queued: about to take one
        return now < part.deadline_mono + 0.05  # every copy's fail-safe comes by then

    def _pump_arms(self) -> None:
        """Hand waiting ARMs to the transport while the bridge's table has room (never under the
        lock: the transport's pump calls the builders, which take it)."""
        now = time.monotonic()
        go: list[Part] = []
        with self._lock:
            self._table = {x for x in self._table if self._holds_entry(x, now)}
            while self._waiting and len(self._table) < self.max_pending:
                part = self._waiting.popleft()
                if part.arm != "waiting" or part.result is not None:
                    continue
                part.arm = "queued"
                self._table.add(part)
                go.append(part)
        for part in go:
            self.t.send(_ArmOutgoing(self, part))

    def _arm_message(self, part: Part) -> p.Message | None:
        now = time.monotonic()
        left_ms = int((part.deadline_mono - now) * 1000 - self.cfg.arm_margin_ms)
        with self._lock:
            why = self._rearm_refusal(part, now) if part.rearms else None
            if why is not None or left_ms < 1 or part.result is not None:
                self.counters["arm_too_late" if why is None else "rearm_refused"] += 1
                return None
            part.arm, part.arm_deadline_ms, part.arm_tx = "sent", min(left_ms, 60000), now
            part.arm_first_tx = part.arm_first_tx or now
        return p.Arm(part.bridge_id, part.arm_deadline_ms)

    def _arm_copy(self, part: Part, seq: int) -> bytes:
        """The ARM resent (same seq) with the time left now, or nothing at all when that is too
        little or the bridge may have fail-safed the part meanwhile (the transport's lock is held)."""
        now = time.monotonic()
        left_ms = int((part.deadline_mono - now) * 1000 - self.cfg.arm_margin_ms)
        with self._lock:
            first = part.arm_first_tx or now
            if left_ms < ARM_GUARD_MS or part.arm != "sent" or part.result is not None or (
                    first <= self._hb_lost_at or first <= self._blind_at):
                self.counters["arm_copy_withheld"] += 1
                return p.DELIMITER  # an empty frame: the bridge ignores it
            part.arm_deadline_ms, part.arm_tx = min(left_ms, 60000), now
        return p.encode_frame(seq, p.Arm(part.bridge_id, part.arm_deadline_ms))

    def _rearm_refusal(self, part: Part, now: float) -> str | None:
        """Why a new ARM for ``part`` could arm a part the bridge already finished (None: it cannot).
        Under the lock."""
        left_s = part.deadline_mono - now - self.cfg.arm_margin_ms / 1000
        first = part.arm_first_tx
        if part.result is not None:
            return "it is finished"
        if part.decide_sent is not None and not part.decide_unknown:
            return "its DECIDE may have been applied"
        if first is not None and first <= self._blind_at:
            return "the port was down long enough for a heartbeat loss: its FAILSAFE may be lost"
        if first is not None and first <= self._hb_lost_at and now < self._hb_lost_at + EVENTS_SETTLE_S:
            return HEARTBEAT_SETTLING
        if left_s < ARM_GUARD_MS / 1000:
            return "too little time left"
        return None

    def _arm_answered(self, part: Part, answer: Answer) -> None:
        now = time.monotonic()
        with self._lock:
            if part.result is not None and answer is DROPPED:
                self._table.discard(part)  # given up before it left (BridgeLink.gate): nothing to do
                answer_done = True
            else:
                answer_done = False
        if answer_done:
            self._pump_arms()
            return
        with self._lock:
            if part.arm == "gone":
                pass  # the bridge restarted meanwhile: armed again after the handshake
            elif answer is None or answer is p.NakReason.DUPLICATE_PART:
                part.arm = "armed"
                self.counters["armed" if not part.rearms else "rearmed"] += 1
            elif answer is LOST or (answer is DROPPED and part.arm == "sent"):
                part.arm = "uncertain"  # it may have reached the bridge
                self.counters["arm_uncertain"] += 1
            elif answer in (p.NakReason.NOT_CONFIGURED, p.NakReason.TABLE_FULL) and part.arm == "sent":
                if answer is p.NakReason.TABLE_FULL:  # a bridge with a smaller table: learn it
                    self.max_pending = max(1, len(self._table) - 1)
                    self.counters["arm_table_full"] += 1
                part.arm = "waiting"  # refused, so not applied: safe to ask again
                self._waiting.appendleft(part)
            else:
                part.arm = "refused"
                self.counters["arm_refused"] += 1
            if part.arm in ("waiting", "refused", "uncertain"):
                self._table.discard(part)
            if part.arm == "uncertain" and part.action is None:
                self._rearm.add(part)  # its fail-safe may not be armed: arm it again when safe
            arm, action, send = part.arm, part.action, part.action is not None and not part.decide_queued
        if answer is p.NakReason.NOT_CONFIGURED:
            self._rehandshake = "ARM refused: bridge not configured"
        if arm == "refused":
            log.warning("plc_arm_refused", port=self.cfg.port, part_id=part.key,
                        reason=getattr(answer, "name", answer))
            if action is not None:
                self._finish(part, "undelivered")
                log.error("plc_decision_undelivered", port=self.cfg.port, part_id=part.key,
                          action=str(action), why="the part is not armed at the bridge")
        elif arm in ("armed", "uncertain") and send:
            self._send_decide(part)
        self._pump_arms()
        self._retry_rearms(now)

    def _retry_rearms(self, now: float) -> None:
        """Arm again the uncertain and lost parts for which that has become safe (I/O thread)."""
        if not self._rearm:
            return
        again, undelivered = [], []
        with self._lock:
            for part in list(self._rearm):
                why = self._rearm_refusal(part, now)
                if why is None:
                    self._rearm.discard(part)
                    part.rearms += 1
                    part.arm = "waiting"
                    self._waiting.append(part)
                    again.append(part)
                elif why != HEARTBEAT_SETTLING:
                    self._rearm.discard(part)  # it never will be
                    if part.arm == "gone" and part.action is not None:
                        undelivered.append(part)
        for part in again:
            log.info("plc_rearm", port=self.cfg.port, part_id=part.key, attempt=part.rearms)
        for part in undelivered:
            self._finish(part, "undelivered")
        if again:
            self._pump_arms()

    # -- deciding --------------------------------------------------------------------------------
    def _send_decide(self, part: Part) -> None:
        def build() -> p.Message | None:
            with self._lock:
                if part.arm not in ("armed", "uncertain") or part.result is not None:
                    part.decide_queued = False  # the part is being armed again: DECIDE follows
                    return None
                part.decide_sent = part.decide_sent or time.monotonic()
                part.decide_unknown = False
            return p.Decide(part.bridge_id, verdict_of(part.action))

        with self._lock:
            part.decide_queued = True
        self.counters["decide_sent"] += 1
        self.t.send(Outgoing(build=build, on_answer=lambda a: self._decide_answered(part, a),
                             wanted=lambda: True))  # resent byte for byte only: never twice applied

    def _decide_answered(self, part: Part, answer: Answer) -> None:
        if answer is None:
            with self._lock:
                part.decide_acked = True  # the bridge took it off its table; APPLIED follows
                self._table.discard(part)
            self._pump_arms()
            return
        if answer is DROPPED and part.decide_sent is None:
            return  # never sent: the part is being armed again, its DECIDE follows that
        what = getattr(answer, "name", str(answer)).lower()
        if answer is p.NakReason.UNKNOWN_PART and self._decide_again(part):
            return
        result = ("lost" if answer in (LOST, DROPPED) or part.decide_before_restart
                  else f"refused_{what}")
        self._finish(part, result)
        log.warning("plc_decide_not_applied", port=self.cfg.port, part_id=part.key,
                    action=str(part.action), answer=what)

    def _decide_again(self, part: Part) -> bool:
        """The bridge does not hold the part and did not finish it: arm it and decide again, if
        that is safe (the DECIDE was refused, so not applied). Under no lock."""
        with self._lock:
            if part.decide_before_restart or part.rearms >= 3:
                return False
            part.decide_unknown, part.decide_queued = True, False
            part.decide_sent = None
            why = self._rearm_refusal(part, time.monotonic())
            if why is not None:
                part.decide_unknown = False
                return False
            part.rearms += 1
            part.arm = "waiting"
            self._waiting.appendleft(part)
        self.counters["decide_unknown_rearmed"] += 1
        log.warning("plc_decide_unknown_rearm", port=self.cfg.port, part_id=part.key)
        self._pump_arms()
        return True

    def _bridge_restarted(self) -> None:
        """The bridge restarted (INFO session 0): its table is empty. Parts it held are armed again
        after the handshake; a DECIDE sent before may or may not have acted (I/O thread)."""
        with self._lock:
            for part in self._table | set(self._rearm):
                if part.result is not None or part.arm not in ("sent", "armed", "uncertain"):
                    continue
                if part.decide_sent is not None:
                    part.decide_before_restart = True
                    continue
                part.arm = "gone"
                self._rearm.add(part)
            self._table = {x for x in self._table if x.arm != "gone"}

    def _finish(self, part: Part, result: str) -> None:
        with self._lock:
            changed = part.result is None or part.result.startswith(("refused", "lost")) and (
                result.startswith(("failsafe", "applied")))
            if changed:
                part.result = result
            late = changed and part.recorded_unconfirmed
            self._table.discard(part)
            self._rearm.discard(part)
        part.done.set()
        self.counters[result] += 1
        if late:
            action, how = self._gate_of(part, part.result, part.action or Action.PASS)
            with self._lock:
                self._late.append((part.key, action, how))
            log.warning("plc_gate_outcome_after_record", port=self.cfg.port, part_id=part.key,
                        result=result, gate=how, action=str(action),
                        why="recorded as unconfirmed: the store's row is corrected, the MQTT result "
                            "is not sent again")
        self._pump_arms()

    def _prune(self, now: float) -> None:
        while len(self._parts) > MAX_PARTS or (
                self._parts and next(iter(self._parts.values())).deadline_mono < now - 60):
            _, old = self._parts.popitem(last=False)
            self._by_id.pop(old.bridge_id, None)
            self._table.discard(old)
            self._rearm.discard(old)
