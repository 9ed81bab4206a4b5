"""A multi-camera station's PLC lanes: each camera's own Modbus RTU slave (its own port and unit id,
the real link on a pty) is armed with, and answers, that camera's parts only."""

from __future__ import annotations

import os
import select
import threading
import tty

import pytest

pytest.importorskip("pymodbus", reason="pymodbus is not installed (the `all` extra)")

from tests.conftest import DESIGN_SEED, write_config  # noqa: E402

from edge_inspector.config import load_config  # noqa: E402
from edge_inspector.daemon import Station  # noqa: E402
from edge_inspector.plc import modbus as m  # noqa: E402
from edge_inspector.plc.lane import Lane  # noqa: E402


@pytest.fixture
def wires():
    """Null-modem pty pairs: the station's end of each (no PLC polls: the results stay queued)."""
    fds, ends, stop = [], [], threading.Event()

    def make() -> str:
        a_m, a_s = os.openpty()
        b_m, b_s = os.openpty()
        for fd in (a_s, b_s):
            tty.setraw(fd)
        fds.extend((a_m, a_s, b_m, b_s))
        ends.append((a_m, b_m))
        return os.ttyname(a_s)

    def pump() -> None:
        while not stop.is_set():
            masters = [fd for pair in list(ends) for fd in pair]
            for fd in select.select(masters, [], [], 0.02)[0] if masters else []:
                a, b = next(p for p in ends if fd in p)
                os.write(b if fd == a else a, os.read(fd, 4096))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    yield make
    stop.set()
    thread.join(2)
    for fd in fds:
        os.close(fd)


def test_each_lane_is_armed_with_and_answers_its_own_cameras_parts_only(wires, tmp_path, product_dir):
    def lane(port, unit):  # ptys refuse parity settings: no parity, two stop bits
        return {"kind": "modbus_rtu", "port": port, "baud": 115200, "parity": "N", "stopbits": 2,
                "unit_id": unit, "results_buffer": 64}

    cams = [{"name": name, "capture": {"kind": "demo", "design_seed": DESIGN_SEED, "seed": seed,
                                       "defect_rate": 0.5, "interval_ms": 10}, "plc": lane(wires(), unit)}
            for name, seed, unit in (("top", 1000, 7), ("bottom", 2000, 8))]
    path = write_config(tmp_path / "lanes.yaml", {
        "station": {"name": "lanes", "data_dir": str(tmp_path / "data")},
        "regions": {"kind": "variation", "reference": str(product_dir / "reference.png"),
                    "good_images": str(product_dir / "good")},
        "policy": {"deadline_ms": 20000}, "logging": {"level": "warning"}, "cameras": cams})
    station = Station.build(load_config(path))
    lanes = [o for o in station.outputs.outputs if isinstance(o, Lane)]
    assert [(x.camera, x.link.cfg.unit_id) for x in lanes] == [("top", 7), ("bottom", 8)]
    assert [s.name for s in station.services][:2] == ["plc-top", "plc-bottom"]
    assert station.run(max_parts=10, install_signals=False) == 0

    decided = {u.name: u.decided for u in station.units}
    assert sum(decided.values()) == 10 and all(decided.values())
    for x in lanes:
        regs = x.link.map.regs
        seqs = [regs[m.ID_LO]] + [w[0] for w in x.link.map._queue]  # presented + queued, never acked
        assert seqs == list(range(1, decided[x.camera] + 1)), (x.camera, seqs)  # its parts, in order
        assert x.link.map._open == {}  # armed with its own parts only: every one it knows is decided
