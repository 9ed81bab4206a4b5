import pytest

from edge_inspector.outputs.mqtt.commands import Command, Rejected, parse

RECIPES = ("pcb", "bracket-v2")


@pytest.mark.parametrize("name,payload,expected", [
    ("pause", b"", Command("pause", "")),
    ("pause", b"  changeover line 3 ", Command("pause", "changeover line 3")),
    ("resume", b"", Command("resume", "")),
    ("recipe", b"bracket-v2", Command("recipe", "bracket-v2")),
])
def test_the_accepted_commands(name, payload, expected):
    assert parse(name, payload, allowed_recipes=RECIPES) == expected


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
    ("recipe", b"other", "not in mqtt.recipes"),
])
def test_bad_commands_are_rejected_with_a_reason(name, payload, why):
    got = parse(name, payload, allowed_recipes=RECIPES)
    assert isinstance(got, Rejected) and why in got.why


def test_a_retained_command_is_refused():
    got = parse("pause", b"", retained=True)
    assert isinstance(got, Rejected) and "retained" in got.why


def test_a_long_unknown_name_is_shortened_in_the_log():
    got = parse("x" * 5000, b"")
    assert isinstance(got, Rejected) and len(got.name) == 40
