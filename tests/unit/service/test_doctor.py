"""The doctor's checks against real peers: a pty with a protocol-speaking fake bridge, a TCP socket
answering MQTT, a damaged database, a model directory with SHA256SUMS."""

from __future__ import annotations

import os
import pty
import socket
import threading

import pytest

from edge_inspector.config import load_config
from edge_inspector.plc import protocol as p
from edge_inspector.service import doctor
from edge_inspector.service.doctor import FAIL, PASS, SKIP, WARN, Options


@pytest.fixture
def cfg(station_config):
    return load_config(station_config())


class FakeBridge:
    """Answers HELLO with ACK + INFO (session echoed) on the slave side of a pty."""

    def __init__(self, answer: bool = True) -> None:
        self.master, slave = pty.openpty()
        self.port = os.ttyname(slave)
        os.close(slave)
        self.answer = answer
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-bridge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        dec = p.StreamDecoder()
        while not self._done.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 256)
            except OSError:
                continue
            for frame in dec.feed(data):
                if self.answer and isinstance(frame.message, p.Hello):
                    os.write(self.master, p.encode_frame(frame.seq, p.Ack()))
                    os.write(self.master, p.encode_frame(0, p.Info(1, 0, 1, 0, frame.message.session, 16, 1)))

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        os.close(self.master)


def test_bridge_handshake_over_a_pty(cfg):
    bridge = FakeBridge()
    try:
        rows = doctor.check_serial(cfg, None, Options(serial=bridge.port, timeout_s=2))
    finally:
        bridge.close()
    assert [r.result for r in rows] == [PASS, PASS], rows
    assert "firmware 0.1.0, protocol 1" in rows[1].detail


def test_a_silent_port_fails_with_what_to_check(cfg):
    bridge = FakeBridge(answer=False)
    try:
        rows = doctor.check_serial(cfg, None, Options(serial=bridge.port, timeout_s=0.6))
    finally:
        bridge.close()
    assert rows[1].result == FAIL and "no INFO answer" in rows[1].detail and "baud rate" in rows[1].fix


def test_missing_port_and_no_bridge_configured(cfg, tmp_path):
    rows = doctor.check_serial(cfg, None, Options(serial=str(tmp_path / "ttyNONE")))
    assert rows[0].result == FAIL and "udev" in rows[0].fix
    assert [r.result for r in doctor.check_serial(cfg, None, Options())] == [SKIP, SKIP]


@pytest.fixture
def broker():
    """A TCP server answering CONNECT with CONNACK and the return code in ``rc[0]``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.1)
    rc = [0]
    seen = []
    done = threading.Event()

    def run():
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                seen.append(conn.recv(1024))
                conn.sendall(bytes([0x20, 2, 0, rc[0]]))
                try:
                    conn.recv(16)
                except OSError:
                    pass

    t = threading.Thread(target=run, name="fake-broker", daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}", rc, seen
    done.set()
    t.join(2)
    srv.close()


def test_broker_accepts_refuses_or_is_down(cfg, broker):
    addr, rc, seen = broker
    ok = doctor.check_broker(cfg, Options(broker=addr))
    assert ok.result == PASS and seen[0][0] == 0x10 and b"MQTT" in seen[0]
    rc[0] = 5
    assert "not authorized" in doctor.check_broker(cfg, Options(broker=addr)).detail
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    down = doctor.check_broker(cfg, Options(broker=f"127.0.0.1:{port}", timeout_s=1))
    assert down.result == FAIL and "firewall" in down.fix
    assert doctor.check_broker(cfg, Options()).result == SKIP


def test_database_missing_ok_and_damaged(cfg):
    assert doctor.check_database(cfg).result == PASS  # none yet
    from edge_inspector.outputs.store import Store

    Store(cfg.db_path).close()
    good = doctor.check_database(cfg)
    assert good.result == PASS and "integrity ok" in good.detail
    data = bytearray(cfg.db_path.read_bytes())
    data[4096: 4096 + 300] = b"\xff" * 300  # scribble over the table's root page header
    cfg.db_path.write_bytes(bytes(data))
    bad = doctor.check_database(cfg)
    assert bad.result == FAIL and "backup" in bad.fix


def test_model_hashes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert doctor.verify_sums(tmp_path)[0] == WARN
    sums = "\n".join(f"{doctor.sha256_file(tmp_path / n)}  {n}" for n in ("config.json", "model.safetensors"))
    (tmp_path / "SHA256SUMS").write_text(sums + "\n")
    assert doctor.verify_sums(tmp_path)[:2] == (PASS, "2 files match SHA256SUMS")
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    result, detail, fix = doctor.verify_sums(tmp_path)
    assert result == FAIL and "model.safetensors changed" in detail and fix


def test_disk_and_gpu_rows(cfg, station_config):
    cfg.station.data_dir.mkdir(parents=True, exist_ok=True)
    assert doctor.check_disk(cfg).result == PASS
    full = load_config(station_config(service={"retention": {"min_free_mb": 1e12}}))
    full.station.data_dir.mkdir(parents=True, exist_ok=True)
    row = doctor.check_disk(full)
    assert row.result == FAIL and "not being saved" in row.detail
    gpu = doctor.check_gpu(cfg, Options())
    assert gpu.result in (PASS, SKIP)  # the anomaly judge needs no GPU


def test_the_bridge_port_comes_from_the_plc_section(station_config):
    bridge = FakeBridge()
    try:
        cfg = load_config(station_config(plc={"kind": "bridge", "port": bridge.port, "boot_wait_ms": 0}))
        rows = doctor.check_serial(cfg, None, Options(timeout_s=2))
    finally:
        bridge.close()
    assert [r.result for r in rows] == [PASS, PASS] and bridge.port in rows[0].detail
