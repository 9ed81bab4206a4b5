"""Shared fixtures: a synthetic product (design 7) and a station config in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
import yaml
from hypothesis import HealthCheck, settings

from edge_inspector.synth.pcb import BoardDesign, make_board, reference_board

# property tests: no per-example deadline (a loaded 2-core machine is slow, not wrong), no example
# database in the working tree; CI explores the same examples every run (derandomize), a developer
# a fresh sample each run (HYPOTHESIS_PROFILE=dev, the default outside CI); "long" hunts longer
settings.register_profile("ci", deadline=None, database=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None, database=None, print_blob=True, max_examples=3000,
                          suppress_health_check=[HealthCheck.too_slow])  # a longer hunt, by hand
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

DESIGN_SEED = 7


@pytest.fixture(autouse=True)
def _logging_restored():
    """Each test leaves structlog's and the root logger's configuration as it found them.

    A station that applies a config (``Station.build``, a reload) calls ``logs.configure`` with the
    config's level, which is process-wide: a reload test that sets ``logging.level: error`` made
    every later test's ``capture_logs`` miss warnings (its filtering wrapper drops them before the
    capturing processor), so tests passed or failed by the order they ran in. ``logs._configured``
    goes back with it: left True over structlog's restored defaults (which print to ``sys.stdout``),
    a station built in-process redirected stdout into a logger that wrote to stdout, and the next log
    line deadlocked on the stream's lock (test_vlm_dataset hung so).
    """
    import logging

    import structlog

    from edge_inspector import logs

    saved, configured = structlog.get_config(), logs._configured
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    libraries = {n: logging.getLogger(n).level for n in logging.root.manager.loggerDict}
    yield
    structlog.configure(**saved)
    logs._configured = configured
    root.setLevel(level)
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    for name, lvl in libraries.items():
        logging.getLogger(name).setLevel(lvl)


@pytest.fixture(scope="session")
def design() -> BoardDesign:
    return BoardDesign(DESIGN_SEED)


@pytest.fixture(scope="session")
def product_dir(tmp_path_factory, design) -> Path:
    """The product's reference and four known-good images, written once per session."""
    root = tmp_path_factory.mktemp("product")
    cv2.imwrite(str(root / "reference.png"), reference_board(design).image)
    (root / "good").mkdir()
    for i in range(4):
        cv2.imwrite(str(root / "good" / f"good-{i}.png"), make_board(design, 10_000_000 + i).image)
    return root


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def station_config(tmp_path, product_dir):
    """A function that writes a station config (demo source) with section overrides."""

    def make(**sections) -> Path:
        data = {
            "station": {"name": "test", "data_dir": str(tmp_path / "data")},
            "capture": {"kind": "demo", "design_seed": DESIGN_SEED, "seed": 5000, "defect_rate": 0.4},
            "regions": {"kind": "variation", "reference": str(product_dir / "reference.png"),
                        "good_images": str(product_dir / "good")},
            "logging": {"level": "warning"},
        }
        for k, v in sections.items():
            replaces = isinstance(v, dict) and "kind" in v and v["kind"] != data.get(k, {}).get("kind")
            data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) and not replaces else v
        return write_config(tmp_path / "station.yaml", data)

    return make


@pytest.fixture
def no_thread_left():
    """Every thread a test starts is joined by its teardown (use it with ``usefixtures``)."""
    import threading
    import time

    before = set(threading.enumerate())
    yield
    end = time.monotonic() + 2
    while (left := [t for t in set(threading.enumerate()) - before if t.is_alive()]) and (
            time.monotonic() < end):
        time.sleep(0.01)
    assert not left, f"threads left running: {[t.name for t in left]}"
