"""The bridge driver's I/O thread (a mixin of :class:`~edge_inspector.plc.bridge.BridgeLink`):
it opens and reopens the port, runs the HELLO/CONFIG handshake, keeps the heartbeat (or withholds it
while the inspection loop is stuck), polls STATUS, and handles the bridge's events: TRIGGER (a part
on the TriggerBus), APPLIED, FAILSAFE, FAULT, STATUS, INFO (a restarted bridge). It also notes what
the re-arm rules (:mod:`.arming`) need: a port outage long enough for a heartbeat loss, and the
bridge's own reports of one."""

from __future__ import annotations

import time
import structlog

from edge_inspector.envelope import Action
from edge_inspector.plc import protocol as p
from edge_inspector.plc.link import DROPPED, LOST, Answer, LinkError, Outgoing

log = structlog.get_logger(__name__)

HOST_VERSION = (0, 1, 0)
TRIGGER_DEBOUNCE_S = 0.003  # the firmware reports a part 3 ms after its first edge (PROTOCOL.md)


def verdict_of(action: Action | str) -> p.Verdict:
    return p.Verdict.REJECT if Action(action) is Action.REJECT else p.Verdict.PASS


class BridgeSession:
    # -- the I/O thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.cfg.reconnect_backoff_s
        while not self._stop.is_set():
            if not self.t.connected:
                try:
                    self.t.open()
                except LinkError as exc:
                    self._set_state("reconnecting", str(exc))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.cfg.reconnect_max_s)
                    continue
                backoff = self.cfg.reconnect_backoff_s
                self._note_outage(time.monotonic())
                self._opened = time.monotonic()
                self._was_ready = False
                self.counters["connects"] += 1
                log.info("plc_port_open", port=self.cfg.port)
                if self.cfg.boot_wait_ms > 0:
                    self._set_state("booting")
                else:
                    self._handshake("port opened")
            try:
                self.t.poll()
                self._tick(time.monotonic())
            except LinkError as exc:
                self.t.close()
                self.t.pause()
                self.counters["disconnects"] += 1
                self._set_state("reconnecting", str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - the one thread that talks to the gate must live
                self.counters["io_errors"] += 1
                log.exception("plc_io_error", port=self.cfg.port, error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.01)

    def _set_state(self, state: str, error: str | None = None) -> None:
        if state != self.state or (error and error != self.last_error):
            (log.warning if error else log.info)("plc_link_state", port=self.cfg.port, state=state,
                                                 error=error)
        self.state = state
        if error:
            self.last_error = error

    def _note_outage(self, now: float) -> None:
        """The port is open again. If the station was silent long enough for the bridge to lose
        the heartbeat meanwhile, FAILSAFE events may have been lost with the port: parts armed
        before now are never armed again."""
        if now - self.t.last_tx >= self.cfg.heartbeat_timeout_ms / 2000:
            self._blind_at = now

    def _heartbeat_lost(self, now: float, why: str) -> None:
        """The bridge says it lost the heartbeat: it fail-safed its pending parts."""
        if now - self._hb_lost_at > 1.0:
            log.warning("plc_bridge_heartbeat_lost", port=self.cfg.port, why=why)
        self._hb_lost_at = now

    def _stalled(self, now: float) -> bool:
        progress = max(self._last_emit, self.progress() if self.progress else 0.0)
        with self._lock:
            waiting = next((x.trigger_mono for x in self._parts.values() if x.action is None), None)
        return waiting is not None and now - max(waiting, progress) > self.stall_timeout_s

    def _tick(self, now: float) -> None:
        stalled = self._stalled(now)
        if stalled != self.t.quiet:
            self.t.quiet = stalled
            if stalled:
                self.counters["heartbeat_withheld"] += 1
                self._set_state("quiet", "the inspection loop makes no progress: heartbeat "
                                "withheld so that the bridge raises FAULT")
            else:
                self._handshake("the inspection loop is making progress again")
        if self.t.quiet:
            return
        if self._rehandshake:
            why, self._rehandshake = self._rehandshake, None
            self._handshake(why)
        if self.state == "booting" and now - self._opened >= self.cfg.boot_wait_ms / 1000:
            self._handshake("no boot message from the bridge")
        if self.state != "ready":
            return
        self._show_station_fault()
        self._retry_rearms(now)
        if self._waiting:
            self._pump_arms()  # an entry of the bridge's table may have freed by its deadline
        if now - self.t.last_tx >= self.cfg.heartbeat_timeout_ms / 3000:
            self.t.send(Outgoing(build=p.Heartbeat, control=True))
        if now - self._last_status >= self.cfg.status_interval_s:
            self._last_status = now
            self.t.send(Outgoing(build=p.StatusRequest, control=True))

    def _show_station_fault(self) -> None:
        """Tell the bridge whether the station can record (STATION 3 / 0), when that changed."""
        fault = self.recording_fault() if self.recording_fault else None
        want = p.FaultCode.STATION if fault else 0
        if want == self._station_sent or self._station_inflight:
            return
        gen = self._hs_gen

        def on_answer(answer: Answer) -> None:
            self._station_inflight = False
            if gen != self._hs_gen or answer in (LOST, DROPPED):
                return  # a new CONFIG cleared it, or no answer: the next tick sends it again
            self._station_sent = want
            if answer is None:
                self.counters["station_fault_set" if want else "station_fault_cleared"] += 1
                (log.error if want else log.info)("plc_station_fault", port=self.cfg.port, code=int(want),
                                                  why=fault or "the station records again")
            else:  # firmware older than the STATION message: it keeps READY on
                self.counters["station_fault_refused"] += 1
                log.error("plc_station_fault_refused", port=self.cfg.port, answer=str(answer),
                          hint="update the bridge firmware: it cannot show that the station does not record")

        self._station_inflight = True
        self.t.send(Outgoing(build=lambda: p.Station(int(want)), on_answer=on_answer, control=True))

    def _handshake(self, why: str) -> None:
        """HELLO then CONFIG; the link is ready (queued frames leave) once CONFIG is ACKed."""
        self._hs_gen += 1
        gen = self._hs_gen
        self._rehandshake = None
        self.t.pause()
        self._set_state("handshake")
        log.info("plc_handshake", port=self.cfg.port, why=why)
        cfg = self.cfg
        config = p.Config(cfg.reject_pulse_ms, cfg.heartbeat_timeout_ms,
                          verdict_of(cfg.failsafe_on_deadline), verdict_of(cfg.failsafe_on_heartbeat))

        def failed(answer: Answer, what: str) -> None:
            why = (f"{cfg.port}: no answer to {what} (is the bridge on this port?)" if answer is LOST
                   else f"{cfg.port}: the bridge refused {what} ({getattr(answer, 'name', answer)})")
            self._set_state("error", why)
            self.t.broken = why  # the I/O thread closes the port and tries again after a back-off

        def on_config(answer: Answer) -> None:
            if gen != self._hs_gen or answer is DROPPED:
                return
            if answer is not None:
                return failed(answer, "CONFIG")
            self._last_status = 0.0
            self._station_sent = 0  # CONFIG turned FAULT off: a station fault is shown again
            self._set_state("ready")
            self._was_ready = True
            self.t.resume()

        def on_hello(answer: Answer) -> None:
            if gen != self._hs_gen or answer is DROPPED:
                return
            if answer is not None:
                return failed(answer, "HELLO")
            self.t.send(Outgoing(build=lambda: config, on_answer=on_config, control=True))

        hello = p.Hello(p.PROTOCOL_VERSION, *HOST_VERSION, self.session)
        self.t.send(Outgoing(build=lambda: hello, on_answer=on_hello, control=True))

    # -- events from the bridge ------------------------------------------------------------------
    def _on_event(self, frame: p.Frame, now: float) -> p.NakReason | None:
        msg = frame.message
        if isinstance(msg, p.Trigger):
            self._on_trigger(msg, now, len(p.encode_frame(frame.seq, msg)))
        elif isinstance(msg, p.Applied | p.Failsafe):
            with self._lock:
                part = self._by_id.get(msg.part_id)
            if part is None:
                self.counters["unknown_part_events"] += 1
                log.warning("plc_event_unknown_part", port=self.cfg.port, bridge_part=msg.part_id,
                            message=type(msg).__name__)
            elif isinstance(msg, p.Applied):
                if msg.action is not verdict_of(part.action or Action.PASS):
                    log.error("plc_applied_mismatch", part_id=part.key, sent=str(part.action),
                              applied=msg.action.name)
                part.bridge_us = msg.t_ms * 1000 + msg.t_us
                if part.decide_sent is not None:
                    self.decide_to_applied_ms = round((now - part.decide_sent) * 1000, 3)
                self._finish(part, f"applied_{msg.action.name.lower()}")
            else:
                part.bridge_us = msg.t_ms * 1000 + msg.t_us
                self._finish(part, f"failsafe_{msg.reason.name.lower()}")
                log.warning("plc_failsafe", port=self.cfg.port, part_id=part.key,
                            reason=msg.reason.name, action=msg.action.name)
        elif isinstance(msg, p.Fault):
            self.counters["bridge_faults"] += 1
            self.bridge["fault_code"] = msg.code
            if msg.code == p.FaultCode.HEARTBEAT_LOST:
                self._heartbeat_lost(now, "FAULT event")
            log.error("plc_bridge_fault", port=self.cfg.port, code=msg.code)
            self._rehandshake = "the bridge reported FAULT"
        elif isinstance(msg, p.Status):
            self.bridge.update(flags=msg.flags, fault_code=msg.fault_code, pending=msg.pending,
                               failsafes=msg.failsafes, rx_bad_frames=msg.rx_bad_frames,
                               tx_dropped=msg.tx_dropped, uptime_ms=msg.uptime_ms)
            if msg.fault_code == p.FaultCode.HEARTBEAT_LOST:
                self._heartbeat_lost(now, "STATUS")
            if self.state == "ready" and not msg.flags & p.StatusFlag.CONFIGURED:
                self._rehandshake = "STATUS says the bridge is not configured"
        elif isinstance(msg, p.Info):
            self.bridge["firmware"] = f"{msg.fw_major}.{msg.fw_minor}.{msg.fw_patch}"
            if 1 <= msg.max_pending <= 255:
                self.max_pending = msg.max_pending
            if msg.session == 0:
                self._last_trigger_count = None
                self._bridge_restarted()  # its table is empty: the parts it held are armed again
                if self._was_ready:  # not the boot message of a bridge we just connected to
                    self.counters["bridge_restarts"] += 1
                    log.warning("plc_bridge_restarted", port=self.cfg.port, cause=msg.reset_cause)
                self._rehandshake = "the bridge (re)started"
        else:
            return p.NakReason.UNKNOWN_TYPE  # a host-to-bridge message cannot come from the bridge
        return None

    def _on_trigger(self, msg: p.Trigger, now: float, wire_bytes: int) -> None:
        last, self._last_trigger_count = self._last_trigger_count, msg.count
        if last is not None and msg.count != last + 1:
            self.counters["triggers_missed"] += max(0, msg.count - last - 1)
            log.warning("plc_triggers_missed", port=self.cfg.port, last=last, count=msg.count)
        self.counters["triggers"] += 1
        # the part came TRIGGER_DEBOUNCE_S before the frame started to arrive
        t0 = now - wire_bytes * 10 / self.cfg.baud - TRIGGER_DEBOUNCE_S
        if self.triggers is None:
            self.counters["triggers_unconsumed"] += 1
            log.warning("plc_trigger_unconsumed", port=self.cfg.port, count=msg.count,
                        why="the capture source takes no software triggers")
            return
        try:
            self.triggers.part_present(msg.t_ms * 1000 + msg.t_us, msg.count, t_mono=t0)
        except RuntimeError as exc:
            self.counters["triggers_refused"] += 1
            log.error("plc_trigger_refused", port=self.cfg.port, count=msg.count, error=str(exc))
