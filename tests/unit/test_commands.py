"""The one command table: every door gets the same checks and the same handlers."""

import pytest

from edge_inspector.commands import COMMANDS, Dispatcher, Reply, Request


def table(calls):
    def handler(name):
        def run(req):
            calls.append((name, req.value, req.via))
            if name == "reload":
                raise RuntimeError("boom")
            return Reply(True, {"name": name})
        return run
    return Dispatcher({n: handler(n) for n in COMMANDS})


def test_the_table_is_the_five_commands_and_a_dispatcher_must_cover_it():
    assert list(COMMANDS) == ["status", "pause", "resume", "reload", "recipe"]
    with pytest.raises(ValueError, match="missing"):
        Dispatcher({"status": lambda r: Reply(True)})
    with pytest.raises(ValueError, match="unknown"):
        Dispatcher({**{n: (lambda r: Reply(True)) for n in COMMANDS}, "reboot": lambda r: Reply(True)})


def test_requests_reach_their_handler_with_the_value_stripped_and_the_door_named():
    calls = []
    d = table(calls)
    assert d.dispatch(Request("pause", "  changeover ", "mqtt")).to_json() == {"ok": True, "name": "pause"}
    assert calls == [("pause", "changeover", "mqtt")]


@pytest.mark.parametrize("request_,error", [
    (Request("explode"), "unknown command 'explode'"),
    (Request("status", "x"), "takes no value"),
    (Request("pause", "a\x00b"), "printable"),
    (Request("pause", "x" * 201), "printable"),
    (Request("recipe", "../etc"), "recipe name"),
    (Request("pause", 5), "must be text"),
])
def test_malformed_requests_are_refused_before_any_handler(request_, error):
    calls = []
    reply = table(calls).dispatch(request_)
    assert not reply.ok and error in reply.error and calls == []


def test_a_handler_that_raises_is_an_error_reply_not_a_crash():
    reply = table([]).dispatch(Request("reload", via="control socket"))
    assert reply.to_json() == {"ok": False, "error": "RuntimeError: boom"}
