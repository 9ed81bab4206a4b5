"""Property tests of MQTT command validation (outputs/mqtt/commands.py, tests only): any topic name
and payload is a Command only when it is one of the accepted commands with a valid payload, and
validation never raises (issue 13, deliverable 3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_inspector.outputs.mqtt.commands import NAMES, Command, Rejected, parse

_NAMES = st.one_of(st.none(), st.sampled_from([*NAMES, "reboot", "Pause", "pause ", "", "recipe/x"]),
                   st.text(max_size=60))
_PAYLOADS = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.sampled_from([b"", b"pcb", b"other", b"changeover", b"\xff\xfe", b"a\nb"]))
_RECIPES = st.lists(st.sampled_from(["pcb", "other", "x.y-z_1"]), max_size=3, unique=True)


@given(_NAMES, _PAYLOADS, st.booleans(), st.integers(0, 512), _RECIPES)
def test_a_command_only_when_name_payload_and_flags_are_all_valid(name, payload, retained, max_bytes,
                                                                  recipes):
    out = parse(name, payload, retained=retained, max_bytes=max_bytes, allowed_recipes=recipes)
    assert isinstance(out, Command | Rejected)
    if isinstance(out, Rejected):
        assert out.why and len(out.name) <= 40
        return
    assert name in NAMES and out.name == name and not retained and len(payload) <= max_bytes
    text = payload.decode("utf-8").strip()  # it decoded, or it would have been refused
    assert out.value == text and len(text) <= 200 and text.isprintable()
    if name == "recipe":
        assert text in recipes


@given(st.sampled_from(["pause", "resume"]), st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl",
                                                                                          "Zp")), max_size=200))
def test_a_short_printable_reason_is_accepted_for_pause_and_resume(name, reason):
    out = parse(name, reason.encode(), max_bytes=1024)
    if reason.strip().isprintable():
        assert out == Command(name, reason.strip())


@given(_NAMES, _PAYLOADS)
def test_a_retained_command_is_never_a_command(name, payload):
    assert isinstance(parse(name, payload, retained=True, max_bytes=10**6, allowed_recipes=["pcb"]), Rejected)
