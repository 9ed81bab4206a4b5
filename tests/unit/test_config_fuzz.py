"""Property tests of config loading (config.py, tests only: it is being reworked elsewhere): any
file or override is a Config or a ConfigError naming the problem (exit 2), never a traceback
(issue 13, deliverable 3). The two bugs it found in config.py (not UTF-8, nested too deep) are fixed."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_inspector.config import Config, load_config
from edge_inspector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["station", "capture", "regions", "judge", "policy", "pipeline", "images", "store", "plc",
            "mqtt", "logging", "triggers", "service"]
KEYS = ["kind", "name", "path", "deadline_ms", "reject_threshold", "min_confidence", "failsafe",
        "timeout", "queue_size", "port", "host", "level", "interval_ms", "reference", "keep", "x"]


def load(data: bytes, overrides: list[str] | None = None) -> Config | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "station.yaml"
        path.write_bytes(data)
        try:
            return load_config(path, overrides)
        except ConfigError as exc:
            assert exc.exit_code == 2 and str(exc)
            return None


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=20), st.sampled_from(["REJECT", "PASS", "demo", "folder", "bridge"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=20)
_CONFIGS = st.dictionaries(st.sampled_from(SECTIONS), st.one_of(
    st.dictionaries(st.sampled_from(KEYS), _VALUES, max_size=5), _SCALARS), max_size=5)


@settings(max_examples=150)
@given(_CONFIGS)
def test_any_structure_in_the_sections_is_a_config_or_a_config_error(data):
    load(yaml.safe_dump(data).encode())


@settings(max_examples=150)
@given(st.text(max_size=400))
def test_any_utf8_text_is_a_config_or_a_config_error(text):
    load(text.encode("utf-8"))


@settings(max_examples=150)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_config_or_a_config_error(data):
    load(data)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.lists(st.sampled_from(SECTIONS + KEYS), min_size=1, max_size=4),
                          st.text(max_size=20)), max_size=4))
def test_any_override_is_a_config_or_a_config_error(items):
    overrides = [".".join(keys) + "=" + value for keys, value in items]
    try:
        load_config(None, overrides)
    except ConfigError as exc:
        assert exc.exit_code == 2


def check_cli(tmp_path: Path, data: bytes) -> subprocess.CompletedProcess:
    f = tmp_path / "station.yaml"
    f.write_bytes(data)
    return subprocess.run([sys.executable, "-m", "edge_inspector", "config", "check", str(f)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


NOT_UTF8 = b"policy:\n  deadline_ms: 100\nstation:\n  name: \xff\xfe line 3\n"
DEEP_FLOW = ("policy: " + "[" * 500 + "]" * 500 + "\n").encode()
DEEP_BLOCK = ("policy:\n" + "".join("  " * (i + 1) + "k:\n" for i in range(500)) + "  " * 501 + "1\n").encode()


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    r = check_cli(tmp_path, NOT_UTF8)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "UTF-8" in r.stderr, r.stderr[-500:]


@pytest.mark.parametrize("data", [DEEP_FLOW, DEEP_BLOCK], ids=["flow", "block"])
def test_yaml_nested_500_deep_is_a_config_error(tmp_path, data):
    r = check_cli(tmp_path, data)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-500:]
