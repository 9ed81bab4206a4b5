"""Starters shared by the tests and the tools: a real Mosquitto on a free loopback port.

``tests/integration/mqtt/conftest.py`` and ``tools/soak.py`` both start their brokers with this.
The broker keeps its state on disk (persistence), so a subscriber's session survives a restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



class Broker:
    def __init__(self, root: Path, extra: str = "", port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self) -> Broker:
        conf = self.root / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true" if "allow_anonymous" not in self.extra else "",
            "persistence true", f"persistence_location {self.root}/", "autosave_interval 1",
            "max_queued_messages 0", "max_inflight_messages 100",
            f"log_dest file {self.root}/mosquitto.log", "log_type error", "log_type warning",
            "log_type notice", "log_type information",
            "user root" if os.geteuid() == 0 else "", self.extra, ""]))
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not wait_until(self._listening, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log()[-2000:]}")
        return self

    def _listening(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        p = self.root / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""
