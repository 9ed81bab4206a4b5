"""Logging configured by one test does not leak into the next (the suite's isolation, tests/conftest.py).

The two tests run in file order: the first configures the process for ``level: error`` as a station
reload does, the second expects a warning to be captured. Before ``_logging_restored`` the second
failed whenever it ran after such a test (the flaky outbox-cap test with tests/unit/service).
"""

import structlog
from structlog.testing import capture_logs

from edge_inspector import logs


def test_a_station_sets_the_process_wide_level_to_error():
    logs.configure("error", "json")
    with capture_logs() as got:
        structlog.get_logger("x").warning("hidden")
    assert got == []  # the filtering wrapper drops it: this is what leaked


def test_the_next_test_captures_warnings_again():
    with capture_logs() as got:
        structlog.get_logger("x").warning("seen")
    assert [e["event"] for e in got] == ["seen"]
