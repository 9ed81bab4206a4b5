"""Modbus RTU: the station as a slave that the PLC polls (pymodbus, serial). Register map and
handshakes in docs/plc.md; :class:`RegisterMap` is the pure model, :class:`ModbusLink` serves it.

Holding registers (0-based; the PLC writes only CONTROL, other writes are ILLEGAL ADDRESS):

    0 CONTROL          PLC: bit0 TRIGGER, bit1 RESULTS_ACK, bit2 CLEAR_ERROR (acted on at edges)
    1 STATUS           bit0 ONLINE, bit1 TRIGGER_READY, bit2 TRIGGER_ACK, bit3 RESULTS_VALID,
                       bit4 SYSTEM_BUSY, bit5 RESULTS_OVERRUN, bit6 ERROR
    2 HEARTBEAT        counts up every heartbeat_interval_ms while the inspection loop is alive
    3 ERROR_CODE       0 none, 1 inspection loop stalled, 2 trigger refused, 3 results overrun
    4 TRIGGER_COUNT    triggers taken over Modbus (wraps at 65536)
    5,6 INSPECTION_ID  the current result's part sequence number (low word, high word)
    7 RESULT_CODE      the decision's reason (RESULT_CODES)
    8 PASS_FAIL        the gate action: 1 PASS, 2 REJECT (0: no result)
    9 OUTCOME          1 PASS, 2 REJECT, 3 NO-READ
   10 RESULTS_QUEUED   results waiting behind the current one
   11 RESULT_FLAGS     bit0 the decision was late (after the part's deadline)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from edge_inspector.capture.base import Trigger
from edge_inspector.capture.triggers import TriggerBus
from edge_inspector.envelope import Action, Inspection, Outcome, Reason
from edge_inspector.outputs.base import Output
from edge_inspector.plc.config import ModbusRtuConfig

log = structlog.get_logger(__name__)

(CONTROL, STATUS, HEARTBEAT, ERROR_CODE, TRIGGER_COUNT, ID_LO, ID_HI, RESULT_CODE, PASS_FAIL,
 OUTCOME, RESULTS_QUEUED, RESULT_FLAGS) = range(12)
N_REGISTERS = 12
C_TRIGGER, C_RESULTS_ACK, C_CLEAR_ERROR = 0x1, 0x2, 0x4
S_ONLINE, S_TRIGGER_READY, S_TRIGGER_ACK, S_RESULTS_VALID, S_BUSY, S_OVERRUN, S_ERROR = (
    1 << i for i in range(7))
E_NONE, E_STALLED, E_TRIGGER_REFUSED, E_OVERRUN = range(4)
# RESULT_CODE on the wire, by the reason's stable string: fixed, never derived from the Reason
# enum's order (a PLC program switches on these numbers; docs/plc.md lists them). A new reason gets
# the next free number here; a number is never reused or moved. A reason missing here is 0xFFFF.
WIRE_CODES: dict[str, int] = {
    "ok": 0, "defect": 1, "low_confidence": 2, "unreadable_frame": 3, "regions_error": 4,
    "judge_error": 5, "timeout": 6, "queue_overflow": 7, "camera_offline": 8, "paused": 9,
    "registration_failed": 10,  # the regions stage's NO-READ
    "not_recorded": 11,  # the station cannot record (disk full): fail-safe
}
UNKNOWN_CODE = 0xFFFF
RESULT_CODES: dict[Reason, int] = {r: WIRE_CODES.get(r.value, UNKNOWN_CODE) for r in Reason}
OUTCOMES = {Outcome.PASS: 1, Outcome.REJECT: 2, Outcome.NO_READ: 3}


class RegisterMap:
    """The registers and the handshakes, without I/O. Thread-safe."""

    def __init__(self, *, results_buffer: int, heartbeat_s: float, stall_s: float,
                 fire: Callable[[], None] | None = None) -> None:
        self.results_buffer, self.heartbeat_s, self.stall_s = results_buffer, heartbeat_s, stall_s
        self.fire = fire
        self.progress: Callable[[], float] | None = None
        self.regs = [0] * N_REGISTERS
        self.regs[STATUS] = S_TRIGGER_READY
        self._queue: deque[list[int]] = deque()  # results behind the current one
        self._open: dict[str, float] = {}  # parts made and not yet decided: trigger times
        self._last_emit = 0.0
        self._hb_t = time.monotonic()
        self._lock = threading.Lock()

    # -- the station's side ----------------------------------------------------------------------
    def part_made(self, trigger: Trigger) -> None:
        with self._lock:
            self._open[trigger.part_id] = trigger.t_mono

    def result(self, inspection: Inspection) -> None:
        f, d = inspection.frame, inspection.decision
        words = [f.seq & 0xFFFF, (f.seq >> 16) & 0xFFFF, WIRE_CODES.get(str(d.reason), UNKNOWN_CODE),
                 2 if d.action is Action.REJECT else 1, OUTCOMES[d.outcome], int(d.late)]
        with self._lock:
            self._open.pop(f.part_id, None)
            self._last_emit = time.monotonic()
            if self.regs[STATUS] & S_RESULTS_VALID or self.regs[CONTROL] & C_RESULTS_ACK:
                if len(self._queue) >= self.results_buffer:
                    self._queue.popleft()
                    self._set_error(E_OVERRUN, S_OVERRUN)
                    log.warning("modbus_results_overrun", part_id=f.part_id)
                self._queue.append(words)
            else:
                self._present(words)

    def trigger_refused(self) -> None:
        with self._lock:
            self._set_error(E_TRIGGER_REFUSED)

    # -- the PLC's side --------------------------------------------------------------------------
    def read(self, now: float | None = None) -> list[int]:
        with self._lock:
            self._refresh(time.monotonic() if now is None else now)
            return list(self.regs)

    def write_control(self, value: int, now: float | None = None) -> None:
        fire = False
        with self._lock:
            self._refresh(time.monotonic() if now is None else now)
            old, self.regs[CONTROL] = self.regs[CONTROL], value & 0xFFFF
            rose, fell = value & ~old, old & ~value
            st = self.regs[STATUS]
            if rose & C_TRIGGER and st & S_TRIGGER_READY and st & S_ONLINE:
                self.regs[STATUS] = (st & ~S_TRIGGER_READY) | S_TRIGGER_ACK
                self.regs[TRIGGER_COUNT] = (self.regs[TRIGGER_COUNT] + 1) & 0xFFFF
                fire = True
            if fell & C_TRIGGER:
                self.regs[STATUS] = (self.regs[STATUS] & ~S_TRIGGER_ACK) | S_TRIGGER_READY
            if rose & C_RESULTS_ACK:
                self.regs[STATUS] &= ~S_RESULTS_VALID
            if fell & C_RESULTS_ACK and self._queue:
                self._present(self._queue.popleft())
            if rose & C_CLEAR_ERROR:
                self.regs[STATUS] &= ~(S_OVERRUN | S_ERROR)
                self.regs[ERROR_CODE] = E_NONE
        if fire and self.fire is not None:
            try:
                self.fire()
            except RuntimeError as exc:  # the bus closed: the station is stopping
                log.error("modbus_trigger_refused", error=str(exc))
                self.trigger_refused()

    # -- internals (under the lock) --------------------------------------------------------------
    def _present(self, words: list[int]) -> None:
        self.regs[ID_LO:RESULT_FLAGS + 1] = words
        self.regs[STATUS] |= S_RESULTS_VALID

    def _set_error(self, code: int, bit: int = 0) -> None:
        self.regs[ERROR_CODE] = code
        self.regs[STATUS] |= S_ERROR | bit

    def _refresh(self, now: float) -> None:
        progress = max(self._last_emit, self.progress() if self.progress else 0.0)
        waiting = min(self._open.values(), default=None)
        alive = waiting is None or now - max(waiting, progress) <= self.stall_s
        st = self.regs[STATUS]
        if alive:
            ticks = int((now - self._hb_t) / self.heartbeat_s)
            self.regs[HEARTBEAT] = (self.regs[HEARTBEAT] + ticks) & 0xFFFF
            self._hb_t += ticks * self.heartbeat_s
            st |= S_ONLINE
        else:
            self._hb_t = now
            if st & S_ONLINE:
                log.error("modbus_loop_stalled", stall_s=self.stall_s)
            st &= ~S_ONLINE
            self.regs[ERROR_CODE] = E_STALLED
            st |= S_ERROR
        st = st | S_BUSY if self._open else st & ~S_BUSY
        self.regs[STATUS] = st
        self.regs[RESULTS_QUEUED] = len(self._queue)


class ModbusLink(Output):
    """The Modbus RTU slave on ``cfg.port``: an Output (results) and a trigger producer."""

    name = "plc"

    def __init__(self, cfg: ModbusRtuConfig, *, triggers: TriggerBus | None = None,
                 stall_timeout_s: float = 3.0) -> None:
        self.cfg = cfg
        self.triggers = triggers
        stall = cfg.stall_timeout_ms / 1000 if cfg.stall_timeout_ms else stall_timeout_s
        self.map = RegisterMap(results_buffer=cfg.results_buffer,
                               heartbeat_s=cfg.heartbeat_interval_ms / 1000, stall_s=stall,
                               fire=self._fire)
        self.requests = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._started = threading.Event()

    def _fire(self) -> None:
        if self.triggers is None:
            raise RuntimeError("the capture source takes no software triggers")
        self.triggers.fire("modbus")

    def arm(self, trigger: Trigger) -> None:
        self.map.part_made(trigger)

    def emit(self, inspection: Inspection) -> None:
        self.map.result(inspection)

    def health(self) -> dict[str, Any]:
        regs = self.map.read()
        return {"name": self.name, "kind": "modbus_rtu", "port": self.cfg.port,
                "state": "online" if self._server is not None else "stopped",
                "status_word": regs[STATUS], "error_code": regs[ERROR_CODE],
                "results_queued": regs[RESULTS_QUEUED], "requests": self.requests,
                "last_error": self.last_error}

    # -- pymodbus --------------------------------------------------------------------------------
    async def _action(self, func_code: int, start: int, address: int, count: int,
                      registers: list[int], values: list[int] | None) -> Any:
        from pymodbus.constants import ExcCodes

        self.requests += 1
        if values is not None:
            if address != CONTROL or count != 1 or func_code not in (6, 16):
                return ExcCodes.ILLEGAL_ADDRESS
            self.map.write_control(int(values[0]))
            registers[CONTROL - start] = int(values[0])
        regs = self.map.read()
        for i, value in enumerate(regs):
            if i != CONTROL or values is None:
                registers[i - start] = value
        return None

    def start(self, progress: Callable[[], float] | None = None) -> None:
        if progress is not None:
            self.map.progress = progress
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="plc-modbus", daemon=True)
            self._thread.start()
            self._started.wait(5)

    def _serve(self) -> None:
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            device = SimDevice(self.cfg.unit_id, simdata=[SimData(0, count=N_REGISTERS,
                               datatype=DataType.REGISTERS)], action=self._action)
            self._server = ModbusSerialServer(device, port=self.cfg.port, baudrate=self.cfg.baud,
                                              parity=self.cfg.parity, stopbits=self.cfg.stopbits,
                                              bytesize=8, timeout=1)
            self._started.set()
            log.info("modbus_listening", port=self.cfg.port, unit_id=self.cfg.unit_id)
            await self._server.serve_forever()

        try:
            asyncio.run(main())
        except Exception as exc:  # noqa: BLE001 - reported in health and the log, never a crash
            self.last_error = f"{self.cfg.port}: {type(exc).__name__}: {exc}"
            log.error("modbus_failed", port=self.cfg.port, error=self.last_error)
        finally:
            self._server = None
            self._started.set()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(timeout=5)
            except Exception as exc:  # noqa: BLE001
                log.warning("modbus_shutdown", port=self.cfg.port, error=str(exc))
        thread.join(timeout=5)
