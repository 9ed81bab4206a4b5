"""While the stages are built, what C code writes to file descriptor 1 becomes a log event on stderr."""

import json
import subprocess
import sys

PROGRAM = """
import os, sys
from edge_inspector import logs
logs.configure("info", "json")
with logs.stdout_to_log("build"), logs.native_stdout_to_log("build"):
    os.write(1, b"GPTQModel banner from C\\n")
    print("a banner from print")
    sys.__stdout__.write("a handle on the original stdout\\n")
sys.stdout.write('{"result": 1}\\n')
"""


def test_fd_1_is_captured_while_inside_and_restored_after():
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == '{"result": 1}\n'  # results only
    lines = sorted(e["line"] for e in map(json.loads, r.stderr.splitlines()) if e["event"] == "library_output")
    assert lines == ["GPTQModel banner from C", "a banner from print", "a handle on the original stdout"]
