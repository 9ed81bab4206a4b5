"""Logging set-up: one chain for structlog and the standard library, stdout left to results."""

import json
import subprocess
import sys

import pytest

TRANSFORMERS = """
from edge_inspector import logs
logs.configure("info", "json")
import transformers.utils.logging as tl
tl.get_logger("transformers.x").warning("before adopting")  # transformers' own stderr handler
logs.adopt_library_loggers()  # what stages.build_stages does once the judge is loaded
tl.get_logger("transformers.x").warning("after adopting")
"""


def test_a_library_logger_with_its_own_handler_is_adopted():
    pytest.importorskip("transformers")
    r = subprocess.run([sys.executable, "-c", TRANSFORMERS], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert "[transformers] before adopting" in lines  # printed raw by its own handler
    after = [json.loads(x) for x in lines if "after adopting" in x]
    assert after == [{**after[0], "event": "after adopting", "level": "warning", "logger": "transformers.x"}]


STDOUT = """
import sys, threading
from edge_inspector import logs
with logs.stdout_to_log("x"):
    print("ignored before configure")  # a caller's own stdout is left alone
logs.configure("info", "json")
real = sys.stdout
with logs.stdout_to_log("a"):
    t = threading.Thread(target=lambda: print("from a thread"))
    t.start(); t.join()
    with logs.stdout_to_log("b"):
        print("nested")
    print("partial", end="")
assert sys.stdout is real
sys.stdout.write("result\\n")
"""


def test_stdout_to_log_is_shared_nested_and_restored():
    r = subprocess.run([sys.executable, "-c", STDOUT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["ignored before configure", "result"]
    lines = [json.loads(x)["line"] for x in r.stderr.splitlines() if "library_output" in x]
    assert lines == ["from a thread", "nested", "partial"]
