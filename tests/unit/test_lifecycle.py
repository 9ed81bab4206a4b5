"""The one lifecycle: setup -> run loop -> teardown on the service's own thread, once."""

from __future__ import annotations

import threading

import pytest

from edge_inspector.lifecycle import Service, Services


class Probe(Service):
    def __init__(self, name, log, fail_setup=False, fail_loop=False):
        super().__init__()
        self.name, self.log, self.fail_setup, self.fail_loop = name, log, fail_setup, fail_loop
        self.threads = {}

    def setup(self):
        self.threads["setup"] = threading.current_thread()
        self.log.append(f"{self.name}.setup")
        if self.fail_setup:
            raise OSError("no device")

    def run_loop(self):
        self.threads["loop"] = threading.current_thread()
        if self.fail_loop:
            raise RuntimeError("loop broke")
        while not self.wait(0.01):
            pass

    def teardown(self):
        self.threads["teardown"] = threading.current_thread()
        self.log.append(f"{self.name}.teardown")


def test_setup_loop_and_teardown_run_on_one_thread_of_its_own():
    log = []
    svc = Probe("a", log)
    svc.start()
    assert svc.running and log == ["a.setup"]
    assert svc.stop() and not svc.running and log == ["a.setup", "a.teardown"]
    threads = set(svc.threads.values())
    assert len(threads) == 1 and threading.current_thread() not in threads
    assert threads.pop().name == "a"


def test_stop_acts_once_and_start_only_once():
    log = []
    svc = Probe("a", log)
    svc.start()
    svc.stop()
    svc.stop()
    assert log.count("a.teardown") == 1
    with pytest.raises(RuntimeError, match="started already"):
        svc.start()
    never = Probe("b", log)
    assert never.stop() and "b.teardown" not in log  # never started: nothing to tear down


def test_a_failing_setup_is_raised_by_start_after_teardown():
    log = []
    svc = Probe("a", log, fail_setup=True)
    with pytest.raises(OSError, match="no device"):
        svc.start()
    assert log == ["a.setup", "a.teardown"] and not svc.running


def test_a_failing_loop_is_reported_and_torn_down():
    log = []
    svc = Probe("a", log, fail_loop=True)
    svc.start()
    svc._thread.join(5)
    assert svc.failure == "RuntimeError: loop broke" and log[-1] == "a.teardown"


def test_services_start_in_order_stop_in_reverse_and_roll_back_a_failed_start():
    log = []
    group = Services([Probe("a", log), Probe("b", log)])
    group.start_all()
    group.stop_all()
    group.stop_all()
    assert log == ["a.setup", "b.setup", "b.teardown", "a.teardown"]
    log.clear()
    broken = Services([Probe("a", log), Probe("b", log, fail_setup=True), Probe("c", log)])
    with pytest.raises(OSError):
        broken.start_all()
    assert log == ["a.setup", "b.setup", "b.teardown", "a.teardown"]  # c never started


def test_status_of_each_service_without_breaking_on_one():
    class Bad(Service):
        name = "bad"

        def status(self):
            raise ValueError("nope")

    class Good(Service):
        name = "good"

        def status(self):
            return {"ok": 1}

    assert Services([Bad(), Good(), Service()]).status() == {"bad": {"error": "ValueError: nope"},
                                                            "good": {"ok": 1}}
