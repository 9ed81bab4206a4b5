"""sd_notify over a real datagram socket, and what counts as stuck."""

from __future__ import annotations

import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from edge_inspector.service.notify import Notifier, SystemdNotifier, assess, notify_address, watchdog_period


@pytest.fixture
def dgram(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    s.bind(str(path))
    s.settimeout(2)
    yield s, path
    s.close()


def test_addresses():
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@sd-notify/1") == b"\0sd-notify/1"
    assert notify_address("") is None and notify_address("vsock:2:1234") is None


def test_sends_one_datagram_per_call(dgram):
    sock, path = dgram
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    assert n.send(READY=1, STATUS="running: 3 parts\nand more")
    assert sock.recv(4096) == b"READY=1\nSTATUS=running: 3 parts and more"
    n.close()


def test_abstract_socket():
    name = f"edge-inspector-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.send(WATCHDOG=1)
        assert s.recv(100) == b"WATCHDOG=1"
        n.close()
    finally:
        s.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path):
    n = Notifier({})
    assert not n.enabled and not n.send(READY=1)
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert not gone.send(READY=1) and gone.errors == 1


def test_watchdog_period():
    assert watchdog_period({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert watchdog_period({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}) == 20.0
    assert watchdog_period({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None  # not for us
    assert watchdog_period({}) is None and watchdog_period({"WATCHDOG_USEC": "x"}) is None


def fake_station(**kw):
    st = SimpleNamespace(stop=threading.Event(), ready=threading.Event(), paused=threading.Event(),
                         worker_thread=kw.pop("worker", None), part_started_mono=None,
                         inspector=SimpleNamespace(judge=SimpleNamespace(busy_for_s=0.0)),
                         queue=SimpleNamespace(qsize=lambda: 0),
                         counters=SimpleNamespace(decisions=0, outcomes={}))
    st.ready.set()
    for k, v in kw.items():
        setattr(st, k, v)
    return st


def test_assess_idle_running_paused_and_stuck():
    now = time.monotonic()
    assert assess(fake_station(), 10, now).state == "idle"
    assert assess(fake_station(part_started_mono=now - 1), 10, now).state == "running"
    paused = fake_station()
    paused.paused.set()
    assert assess(paused, 10, now).state == "paused" and assess(paused, 10, now).ok
    busy = fake_station(inspector=SimpleNamespace(judge=SimpleNamespace(busy_for_s=11.0)))
    h = assess(busy, 10, now)
    assert not h.ok and h.state == "stuck" and "judge" in h.detail
    slow = assess(fake_station(part_started_mono=now - 12), 10, now)
    assert not slow.ok and "one part" in slow.detail
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    assert not assess(fake_station(worker=dead), 10, now).ok
    stopping = fake_station()
    stopping.stop.set()
    assert assess(stopping, 10, now).state == "stopping"


def test_service_pings_only_while_healthy_and_says_stopping(dgram):
    sock, path = dgram
    st = fake_station()
    st.ready.clear()
    svc = SystemdNotifier(st, stuck_after_s=1.0, status_every_s=0.1,
                          env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})
    svc.start()
    got = []

    def collect(seconds=0.0, until=None, timeout=30.0):
        """Gather datagrams for ``seconds``, or until ``until(got)`` holds (at most ``timeout``)."""
        end = time.monotonic() + (seconds if until is None else timeout)
        sock.settimeout(0.05)
        while time.monotonic() < end and not (until and until(got)):
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                pass
        assert until is None or until(got), got

    collect(0.2)  # a window: nothing may come before the station is up
    assert not any("READY=1" in m or "WATCHDOG=1" in m for m in got)  # not before the station is up
    st.ready.set()
    collect(until=lambda g: any("READY=1" in m for m in g) and sum("WATCHDOG=1" in m for m in g) >= 3)
    got.clear()
    judge, hung_at = st.inspector.judge, time.monotonic() - 5.0

    class Hung:  # a judge call that hangs, for ever longer: the status line changes every tick
        busy_for_s = property(lambda self: time.monotonic() - hung_at)

    st.inspector.judge = Hung()
    collect(until=lambda g: sum("STATUS=stuck" in m for m in g) >= 3)  # three status periods on
    later = got[[i for i, m in enumerate(got) if "STATUS=stuck" in m][0] + 1:]
    assert not any("WATCHDOG=1" in m for m in later)
    st.inspector.judge = judge
    judge.busy_for_s = 0.0
    got.clear()
    collect(until=lambda g: any("WATCHDOG=1" in m for m in g))  # recovered: pings again
    st.stop.set()
    collect(until=lambda g: any("STOPPING=1" in m for m in g))
    svc.stop()
    assert any("STOPPING=1" in m for m in got)
