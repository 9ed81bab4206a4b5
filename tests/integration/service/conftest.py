"""A real daemon subprocess (``python -m edge_inspector run``) on the demo product, with a real
NOTIFY_SOCKET datagram socket, for the service tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_inspector.config import load_config
from edge_inspector.service.config import control_socket_path
from edge_inspector.service.control import ControlError, request

ROOT = Path(__file__).resolve().parents[3]

# Runs the daemon with the anomaly judge patched to hang on the part whose sequence number is in
# $HANG_AT_SEQ: the real daemon code path with a judge that never answers.
HANGING = """
import os, sys, threading
from edge_inspector.judge.anomaly import AnomalyJudge
real = AnomalyJudge.judge
def judge(self, frame, regions, deadline):
    if frame.seq >= int(os.environ["HANG_AT_SEQ"]):
        threading.Event().wait()
    return real(self, frame, regions, deadline)
AnomalyJudge.judge = judge
from edge_inspector.cli import main
sys.exit(main())
"""


class NotifySocket:
    """A unix datagram socket standing in for systemd's, collecting what the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="test-notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def times(self, key: str) -> list[float]:
        return [t for t, m in list(self.messages) if key in m]

    def wait_for(self, key: str, timeout: float = 60.0, value: str | None = None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, m in list(self.messages):
                if key in m and (value is None or value in m[key]):
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no {key}{'~' + value if value else ''} in {self.messages[-10:]}")

    def close(self) -> None:
        self._done.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    def __init__(self, config: Path, tmp: Path, watchdog_usec: int | None = None,
                 hang_at_seq: int | None = None) -> None:
        self.config = config
        self.cfg = load_config(config)
        self.notify = NotifySocket(tmp / "notify.sock")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_PID", None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        args = ["run", "--config", str(config), "--set", "logging.format=json", "--set", "logging.level=info"]
        if hang_at_seq is not None:
            env["HANG_AT_SEQ"] = str(hang_at_seq)
            cmd = [sys.executable, "-c", HANGING, *args]
        else:
            cmd = [sys.executable, "-m", "edge_inspector", *args]
        self.log_path = tmp / "daemon.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, env=env, cwd=ROOT)

    @property
    def socket_path(self) -> Path:
        return control_socket_path(self.cfg)

    def events(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_event(self, name: str, timeout: float = 30.0, after: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events()[after:] if e.get("event") == name]
            if found:
                return found[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {name} event; log tail:\n{self.log_path.read_text()[-3000:]}")

    def status(self) -> dict:
        return request(self.socket_path, "status")["status"]

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.notify.wait_for("READY", timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                return
            except ControlError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def wait_decisions(self, n: int, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st["counters"]["decisions"] >= n:
                return st
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} decisions in {timeout} s")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()
        self._log.close()


@pytest.fixture
def daemon(tmp_path):
    started: list[Daemon] = []

    def start(config: Path, **kw) -> Daemon:
        d = Daemon(config, tmp_path, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
