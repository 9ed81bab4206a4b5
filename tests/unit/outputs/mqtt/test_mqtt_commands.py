"""The MQTT door: transport checks here, the name and value checks shared with every door."""

import pytest

from edge_inspector.commands import Request
from edge_inspector.outputs.mqtt.commands import Rejected, parse


@pytest.mark.parametrize("name,payload,expected", [
    ("pause", b"", Request("pause", "", "mqtt")),
    ("pause", b"  changeover line 3 ", Request("pause", "changeover line 3", "mqtt")),
    ("resume", b"", Request("resume", "", "mqtt")),
    ("recipe", b"bracket-v2", Request("recipe", "bracket-v2", "mqtt")),
    ("reload", b"", Request("reload", "", "mqtt")),
    ("status", b"", Request("status", "", "mqtt")),
])
def test_the_accepted_commands(name, payload, expected):
    assert parse(name, payload) == expected


@pytest.mark.parametrize("name,payload,why", [
    ("reboot", b"", "unknown command"),
    (None, b"", "unknown command"),
    ("pause/now", b"", "unknown command"),
    ("pause", b"x" * 257, "over the limit of 256"),
    ("pause", b"\xff\xfe", "UTF-8"),
    ("pause", b"line\x00break", "printable"),
    ("pause", "é".encode() * 130, "over the limit"),
    ("recipe", b"../../etc/passwd", "recipe name"),
    ("recipe", b"", "recipe name"),
    ("reload", b"now", "takes no value"),
])
def test_bad_commands_are_rejected_with_a_reason(name, payload, why):
    got = parse(name, payload)
    assert isinstance(got, Rejected) and why in got.why


def test_a_retained_command_is_refused():
    got = parse("pause", b"", retained=True)
    assert isinstance(got, Rejected) and "retained" in got.why


def test_a_long_unknown_name_is_shortened_in_the_log():
    got = parse("x" * 5000, b"")
    assert isinstance(got, Rejected) and len(got.name) == 40
