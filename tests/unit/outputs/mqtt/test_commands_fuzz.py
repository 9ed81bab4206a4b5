"""Property tests of the MQTT door and the command table: any topic name and payload is a request
only when it names a command of the table with a valid value, parsing never raises, and the
dispatcher answers anything without reaching a handler for a malformed request (issue 13,
deliverable 3; the table is issue 12's)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_inspector.commands import COMMANDS, NAMES, RECIPE_NAME, Dispatcher, Reply, Request
from edge_inspector.outputs.mqtt.commands import Rejected, parse

_NAMES = st.one_of(st.none(), st.sampled_from([*NAMES, "reboot", "Pause", "pause ", "", "recipe/x"]),
                   st.text(max_size=60))
_PAYLOADS = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.sampled_from([b"", b"pcb", b"other", b"changeover", b"\xff\xfe", b"a\nb"]))


@given(_NAMES, _PAYLOADS, st.booleans(), st.integers(0, 512))
def test_a_request_only_when_name_payload_and_flags_are_all_valid(name, payload, retained, max_bytes):
    out = parse(name, payload, retained=retained, max_bytes=max_bytes)
    assert isinstance(out, Request | Rejected)
    if isinstance(out, Rejected):
        assert out.why and len(out.name) <= 40
        return
    assert name in NAMES and out.name == name and not retained and len(payload) <= max_bytes
    text = payload.decode("utf-8").strip()  # it decoded, or it would have been refused
    assert out.value == text and len(text) <= 200 and text.isprintable() and out.via == "mqtt"
    if COMMANDS[name].value is None:
        assert text == ""
    if name == "recipe":
        assert RECIPE_NAME.match(text)


@given(st.sampled_from(["pause", "resume"]), st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl",
                                                                                          "Zp")), max_size=200))
def test_a_short_printable_reason_is_accepted_for_pause_and_resume(name, reason):
    out = parse(name, reason.encode(), max_bytes=1024)
    if reason.strip().isprintable():
        assert out == Request(name, reason.strip(), "mqtt")


@given(_NAMES, _PAYLOADS)
def test_a_retained_command_is_never_a_request(name, payload):
    assert isinstance(parse(name, payload, retained=True, max_bytes=10**6), Rejected)


@given(st.text(max_size=60), st.one_of(st.text(max_size=300), st.integers(), st.none()), st.text(max_size=20))
def test_the_dispatcher_answers_anything_and_only_calls_a_handler_for_a_valid_request(name, value, via):
    called = []
    d = Dispatcher({n: (lambda r, n=n: (called.append(n), Reply(True))[1]) for n in COMMANDS})
    reply = d.dispatch(Request(name, value, via))
    assert isinstance(reply, Reply)
    assert (called == [name]) == reply.ok and (reply.ok or reply.error)
