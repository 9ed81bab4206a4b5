"""The real bridge firmware in simavr, for tests and the benchmark.

:class:`BridgeSim` runs ``firmware_bridge/build/bridge_sim`` (its stdout protocol is documented at
the top of ``firmware_bridge/sim/bridge_sim.c``): the pty to open, pin edges with the simulated time
in microseconds, the part-present input to drive. :class:`WireProxy` sits between the station and
that pty: a second pty whose path is a symlink the station opens, copying bytes both ways, with an
optional byte-error rate, and which can be unplugged and plugged back like a USB device.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import subprocess
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIM_BIN = ROOT / "firmware_bridge" / "build" / "bridge_sim"
ELF = ROOT / "firmware_bridge" / "build" / "bridge.elf"


def unavailable() -> str | None:
    """Why the simulation cannot run here (None: it can)."""
    if not SIM_BIN.exists() or not ELF.exists():
        tools = [t for t in ("avr-gcc", "gcc") if shutil.which(t) is None]
        hint = f" (missing: {', '.join(tools)})" if tools else ""
        return (f"{SIM_BIN.relative_to(ROOT)} or {ELF.relative_to(ROOT)} not built: run "
                f"`make -C firmware_bridge all sim`{hint}; needs gcc-avr avr-libc simavr libsimavr-dev")
    return None


@dataclass(frozen=True)
class Line:
    words: tuple[str, ...]
    wall: float  # time.monotonic() when the line was read

    @property
    def t_us(self) -> int:  # simulated time of PIN / IN / TIME lines
        return int(self.words[3] if self.words[0] in ("PIN", "IN") else self.words[1])


class BridgeSim:
    """The harness process. ``lines`` keeps every stdout line; ``wait`` finds the next one."""

    def __init__(self, *, free_run: bool = False) -> None:
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        args = [str(SIM_BIN), *(["--free-run"] if free_run else []), str(ELF)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        first = self.proc.stdout.readline().split()
        if not first or first[0] != "PTY":
            self.stop()
            raise RuntimeError(f"bridge_sim: unexpected first line {first}")
        self.pty = first[1]
        self.lines: list[Line] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="bridge-sim", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for text in self.proc.stdout:
            line = Line(tuple(text.split()), time.monotonic())
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def mark(self) -> int:
        """The index of the next line: ``wait(..., start=mark)`` looks only at lines after now."""
        with self._cond:
            return len(self.lines)

    def wait(self, *prefix: str, start: int = 0, timeout: float = 2.0) -> tuple[int, Line]:
        """The first line at index >= start whose words begin with ``prefix``: (index, line)."""
        end = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    if self.lines[i].words[: len(prefix)] == prefix:
                        return i, self.lines[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"bridge_sim: no {' '.join(prefix)} within {timeout} s")
                self._cond.wait(left)

    def pins(self, name: str, start: int = 0) -> list[Line]:
        with self._cond:
            return [x for x in self.lines[start:] if x.words[:2] == ("PIN", name)]

    def cmd(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def part_present(self, present: bool) -> Line:
        start = self.mark()
        self.cmd(f"PART_PRESENT {int(present)}")
        return self.wait("IN", "PART_PRESENT", str(int(present)), start=start)[1]

    def part(self, hold_s: float = 0.01) -> Line:
        """A part passes the sensor: the input on for ``hold_s``; the line of its first edge."""
        on = self.part_present(True)
        time.sleep(hold_s)
        while self.time_us() - on.t_us < hold_s * 1e6:  # held in simulated time too (a busy
            time.sleep(0.001)  # machine can stall the harness: both commands in one quantum)
        self.part_present(False)
        return on

    def time_us(self) -> int:
        start = self.mark()
        self.cmd("TIME")
        return self.wait("TIME", start=start)[1].t_us

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.cmd("QUIT")
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait(timeout=2)
        if getattr(self, "_reader", None) is not None:
            self._reader.join(timeout=2)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass


class WireProxy:
    """A pty in front of ``target`` (the bridge's pty); the station opens ``link`` (a symlink)."""

    def __init__(self, target: str, link: Path, *, ber: float = 0.0, seed: int = 1) -> None:
        self.link, self.ber = Path(link), ber
        self.rng = random.Random(seed)
        self.corrupted = 0
        self._target = os.open(target, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._target)
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.plug()
        self._thread = threading.Thread(target=self._pump, name="wire-proxy", daemon=True)
        self._thread.start()

    def plug(self) -> None:
        """A new pty appears at ``link`` (like a USB serial device plugged in)."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo before the station opens it
        os.set_blocking(master, False)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)
        with self._lock:
            self._master, self._slave = master, slave

    def unplug(self) -> None:
        """The pty disappears: the station's reads fail, the path is gone."""
        with self._lock:
            fds, self._master, self._slave = (self._master, self._slave), None, None
        self.link.unlink(missing_ok=True)
        for fd in fds:
            if fd is not None:
                os.close(fd)

    def _corrupt(self, data: bytes) -> bytes:
        if not self.ber:
            return data
        out = bytearray(data)
        for i in range(len(out)):
            if self.rng.random() < self.ber:
                out[i] ^= self.rng.randrange(1, 256)
                self.corrupted += 1
        return bytes(out)

    def _from_target(self, data: bytes) -> None:
        """A tap on what the far end (the bridge) sent, before the noise: for subclasses that
        watch the wire (tools/soak.py)."""

    def _from_link(self, data: bytes) -> None:
        """A tap on what the far end received from the link's side (the station), after the noise."""

    def _pump(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                master = self._master
            fds = [self._target] + ([master] if master is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.02)
            except (OSError, ValueError):
                continue  # the master closed under us (unplug)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, OSError):
                    continue
                if not data:
                    continue
                from_target = fd == self._target
                if from_target:
                    self._from_target(data)
                out = self._corrupt(data)
                if not from_target:
                    self._from_link(out)
                dst = master if from_target else self._target
                if dst is None:
                    continue
                try:
                    self._write_all(dst, out)
                except OSError:
                    pass  # unplugged meanwhile: the bytes are lost, as on a real unplug

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view, end = memoryview(data), time.monotonic() + 0.5
        while view and time.monotonic() < end:  # nobody reading for 0.5 s: the rest is lost
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                select.select([], [fd], [], 0.05)
                continue
            view = view[n:]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.unplug()
        os.close(self._target)
