"""sd_notify in pure Python, and the service that tells systemd how the station is.

The protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` assignments in one datagram on the
AF_UNIX socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
``$WATCHDOG_USEC`` (with ``$WATCHDOG_PID`` naming this process, or unset) asks for ``WATCHDOG=1`` at
least every that many microseconds; we ping every half of it.

:class:`SystemdNotifier` sends

- ``READY=1`` once the station runs: the source (cameras) is open, the model loaded, the outputs
  (PLC link, store, ...) built and the other services started;
- ``STATUS=...`` on every change of state and every ``service.watchdog.status_every_s``;
- ``WATCHDOG=1`` only while the inspection loop is healthy (:func:`assess`): an idle line is healthy,
  a worker thread that died, a part that has been in the worker, or a judge call that has been
  running, for longer than ``service.watchdog.stuck_after_s`` is not. Then the pings stop and
  systemd restarts the daemon after ``WatchdogSec=``;
- ``STOPPING=1`` as soon as the station starts to shut down.

Without ``$NOTIFY_SOCKET`` (not under systemd) the service does nothing but keep its state for the
status CLI.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import structlog

from edge_inspector.lifecycle import Service, StationView

log = structlog.get_logger(__name__)


def notify_address(value: str) -> str | bytes | None:
    """The socket address for a ``$NOTIFY_SOCKET`` value; None when it is not a unix socket."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # vsock:... and other transports are not supported


class Notifier:
    """Sends sd_notify datagrams. Silent no-op without ``$NOTIFY_SOCKET``; never raises."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = notify_address(raw)
        if raw and self.address is None:
            log.warning("notify_socket_unsupported", notify_socket=raw)
        self.watchdog_s = watchdog_period(env)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """``send(READY=1, STATUS="...")``. True when the datagram left."""
        if self.address is None:
            return False
        msg = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(msg, self.address)
            except OSError as exc:
                self.errors += 1
                if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                    log.warning("notify_failed", error=str(exc), errors=self.errors)
                return False
        self.sent += 1
        return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_period(env: dict[str, str] | None = None) -> float | None:
    """Seconds between two pings systemd expects (``$WATCHDOG_USEC``), or None when off."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid.strip() != str(os.getpid())):
        return None
    return usec / 1_000_000


@dataclass(frozen=True, slots=True)
class Health:
    """How the inspection loop is: ``ok`` is what the watchdog pings on."""

    ok: bool
    state: str  # starting | running | idle | paused | not_recording | stopping | stuck
    detail: str = ""


def assess(station: StationView, stuck_after_s: float, now: float | None = None) -> Health:
    """Whether the station is inspecting (or could: an idle line is fine) or is stuck."""
    now = time.monotonic() if now is None else now
    if station.stop.is_set():
        return Health(True, "stopping", "finishing the parts in flight")
    if not station.ready.is_set():
        return Health(True, "starting")
    worker = station.worker_thread
    if worker is not None and not worker.is_alive():
        return Health(False, "stuck", "the inspection worker thread has died")
    busy = station.inspector.judge.busy_for_s
    if busy > stuck_after_s:
        return Health(False, "stuck", f"the judge has been busy with one call for {busy:.1f} s "
                                      f"(limit {stuck_after_s:g} s)")
    started = station.part_started_mono
    if started is not None and now - started > stuck_after_s:
        return Health(False, "stuck", f"the worker has been on one part for {now - started:.1f} s "
                                      f"(limit {stuck_after_s:g} s)")
    fault = getattr(station, "recording_fault", None)
    if fault:  # no watchdog ping: a station that cannot record says so (systemd restarts it)
        return Health(False, "not_recording", f"every trigger is a NO-READ (not_recorded) until a "
                                              f"write succeeds: {fault}")
    if station.paused.is_set():
        return Health(True, "paused", "every trigger is a NO-READ (paused)")
    idle = started is None and station.queue.qsize() == 0
    return Health(True, "idle" if idle else "running")


def status_line(station: StationView, health: Health) -> str:
    c = station.counters
    o = c.outcomes
    head = health.state + (f": {health.detail}" if health.detail else "")
    return (f"{head}; {c.decisions} parts, {o.get('PASS', 0)} PASS, {o.get('REJECT', 0)} REJECT, "
            f"{o.get('NO-READ', 0)} NO-READ; queue {station.queue.qsize()}")


class SystemdNotifier(Service):
    """READY, STATUS, WATCHDOG and STOPPING for systemd (Type=notify, WatchdogSec=)."""

    name = "systemd"
    thread_name = "systemd-notify"

    def __init__(self, station: StationView, stuck_after_s: float = 10.0, status_every_s: float = 5.0,
                 env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.station = station
        self.notifier = Notifier(env)
        self.stuck_after_s = stuck_after_s
        self.status_every_s = status_every_s
        self.health = Health(True, "starting")
        self.pings = 0
        self._stopping_sent = False

    def setup(self) -> None:
        self.notifier.send(STATUS="starting: opening the outputs and services")
        log.info("systemd_notify", enabled=self.notifier.enabled, watchdog_s=self.notifier.watchdog_s)

    def _tick_s(self) -> float:
        period = self.notifier.watchdog_s
        tick = min(self.status_every_s, 1.0)
        return min(tick, period / 2) if period else tick

    def run_loop(self) -> None:
        station = self.station
        while not self.stopping and not station.ready.is_set():
            if station.stop.is_set():
                break
            self.wait(0.05)
        ready_sent = False
        last_status = last_state = ""
        last_status_at = 0.0
        last_ping = 0.0
        while not self.stopping:
            now = time.monotonic()
            health = assess(station, self.stuck_after_s, now)
            if health.state != self.health.state:
                log_fn = log.error if not health.ok else log.info
                log_fn("station_state", state=health.state, detail=health.detail)
            self.health = health
            fields: dict[str, str | int] = {}
            if not ready_sent and station.ready.is_set() and health.state != "stopping":
                fields["READY"] = 1
                ready_sent = True
            if health.state == "stopping" and not self._stopping_sent:
                fields["STOPPING"] = 1
                self._stopping_sent = True
            line = status_line(station, health)
            if line != last_status and (health.state != last_state
                                        or now - last_status_at >= self.status_every_s):
                fields["STATUS"] = line
                last_status, last_status_at, last_state = line, now, health.state
            period = self.notifier.watchdog_s
            if period and health.ok and now - last_ping >= period / 2:
                fields["WATCHDOG"] = 1
                last_ping = now
                self.pings += 1
            if fields:
                self.notifier.send(**fields)
            self.wait(self._tick_s())

    def teardown(self) -> None:
        if not self._stopping_sent:
            self.notifier.send(STOPPING=1, STATUS="stopped")
            self._stopping_sent = True
        self.notifier.close()
