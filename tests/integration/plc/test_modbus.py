"""The Modbus RTU slave over a pty pair, polled by a pymodbus client (the PLC's side)."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

pytest.importorskip("pymodbus", reason="pymodbus is not installed (the `all` extra)")

from pymodbus.client import ModbusSerialClient  # noqa: E402

from edge_inspector.capture.base import PartFactory  # noqa: E402
from edge_inspector.capture.triggers import TriggerBus  # noqa: E402
from edge_inspector.envelope import Action, Decision, Inspection, Outcome, Reason  # noqa: E402
from edge_inspector.plc import modbus as m  # noqa: E402
from edge_inspector.plc.config import ModbusRtuConfig  # noqa: E402
from tests.helpers import wait_until


@pytest.fixture(autouse=True)
def _threads_joined(no_thread_left):
    """Every thread a test starts is joined by its teardown (tests/conftest.py)."""


@pytest.fixture
def wire():
    """Two ptys joined back to back (a null-modem cable): (station's path, PLC's path)."""
    a_m, a_s = os.openpty()
    b_m, b_s = os.openpty()
    for fd in (a_s, b_s):
        tty.setraw(fd)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            for fd in select.select([a_m, b_m], [], [], 0.02)[0]:
                os.write(b_m if fd == a_m else a_m, os.read(fd, 4096))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    yield os.ttyname(a_s), os.ttyname(b_s)
    stop.set()
    thread.join(2)
    for fd in (a_m, a_s, b_m, b_s):
        os.close(fd)


@pytest.fixture
def station(wire):
    bus = TriggerBus()
    # ptys refuse parity settings: no parity, two stop bits (the other Modbus RTU framing)
    link = m.ModbusLink(ModbusRtuConfig(port=wire[0], baud=115200, parity="N", stopbits=2,
                                        unit_id=7, results_buffer=2, heartbeat_interval_ms=50),
                        triggers=bus, stall_timeout_s=0.3)
    link.start(progress=time.monotonic)
    client = ModbusSerialClient(port=wire[1], baudrate=115200, parity="N", stopbits=2, timeout=1)
    assert client.connect()
    yield link, bus, client
    client.close()
    link.close()
    assert link._thread is None


def regs(client) -> list[int]:
    r = client.read_holding_registers(0, count=m.N_REGISTERS, device_id=7)
    assert not r.isError(), r
    return r.registers


def write(client, value: int) -> None:
    assert not client.write_register(m.CONTROL, value, device_id=7).isError()


def result(trig, action: Action, outcome: Outcome, reason: Reason = Reason.OK) -> Inspection:
    d = Decision(trig.part_id, outcome, action, reason, "", {}, time.monotonic(), False)
    return Inspection(trig.frame(None, error="test"), d)


def test_trigger_handshake_fires_the_bus(station):
    link, bus, client = station
    st = regs(client)[m.STATUS]
    assert st & m.S_ONLINE and st & m.S_TRIGGER_READY and not st & m.S_TRIGGER_ACK
    write(client, m.C_TRIGGER)
    event = bus.wait(1.0)
    assert event is not None and event.origin == "modbus"
    r = regs(client)
    assert r[m.STATUS] & m.S_TRIGGER_ACK and not r[m.STATUS] & m.S_TRIGGER_READY
    assert r[m.TRIGGER_COUNT] == 1
    write(client, m.C_TRIGGER)  # held high: no second trigger
    write(client, 0)
    r = regs(client)
    assert r[m.STATUS] & m.S_TRIGGER_READY and not r[m.STATUS] & m.S_TRIGGER_ACK
    assert bus.pending == 0


def test_results_are_presented_one_at_a_time_with_ack_and_overrun(station):
    link, _, client = station
    parts = PartFactory(1.0)
    trigs = [parts.trigger("cam") for _ in range(4)]
    link.emit(result(trigs[0], Action.REJECT, Outcome.REJECT, Reason.DEFECT))
    link.emit(result(trigs[1], Action.PASS, Outcome.PASS))
    r = regs(client)
    assert r[m.STATUS] & m.S_RESULTS_VALID
    assert (r[m.ID_LO], r[m.PASS_FAIL], r[m.OUTCOME], r[m.RESULT_CODE]) == (
        trigs[0].seq, 2, 2, m.RESULT_CODES[Reason.DEFECT])
    assert r[m.RESULTS_QUEUED] == 1
    write(client, m.C_RESULTS_ACK)
    assert not regs(client)[m.STATUS] & m.S_RESULTS_VALID
    write(client, 0)
    r = regs(client)
    assert r[m.STATUS] & m.S_RESULTS_VALID and r[m.ID_LO] == trigs[1].seq and r[m.PASS_FAIL] == 1
    link.emit(result(trigs[2], Action.REJECT, Outcome.NO_READ, Reason.TIMEOUT))
    link.emit(result(trigs[3], Action.REJECT, Outcome.NO_READ, Reason.TIMEOUT))
    link.emit(result(trigs[3], Action.REJECT, Outcome.NO_READ, Reason.TIMEOUT))  # one too many
    r = regs(client)
    assert r[m.STATUS] & m.S_OVERRUN and r[m.ERROR_CODE] == m.E_OVERRUN
    write(client, m.C_CLEAR_ERROR)
    write(client, 0)
    r = regs(client)
    assert not r[m.STATUS] & (m.S_OVERRUN | m.S_ERROR) and r[m.ERROR_CODE] == 0


def test_heartbeat_counts_while_alive_and_stops_when_the_loop_stalls(station):
    link, _, client = station
    h0 = regs(client)[m.HEARTBEAT]
    assert wait_until(lambda: regs(client)[m.HEARTBEAT] >= h0 + 2, 30)  # counts while alive
    link.map.progress = lambda: 0.0  # the loop stops moving ...
    link.arm(PartFactory(1.0).trigger("cam"))  # ... with a part waiting
    assert wait_until(lambda: not regs(client)[m.STATUS] & m.S_ONLINE, 30)
    r = regs(client)
    assert not r[m.STATUS] & m.S_ONLINE and r[m.STATUS] & m.S_ERROR and r[m.STATUS] & m.S_BUSY
    assert r[m.ERROR_CODE] == m.E_STALLED
    time.sleep(0.15)  # a window of several heartbeat intervals: the counter holds still
    assert regs(client)[m.HEARTBEAT] == r[m.HEARTBEAT]


def test_only_the_control_register_is_writable(station):
    _, _, client = station
    r = client.write_register(m.STATUS, 0xFFFF, device_id=7)
    assert r.isError()
    assert regs(client)[m.STATUS] & m.S_ONLINE
