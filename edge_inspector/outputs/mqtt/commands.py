"""The MQTT door to the command table: ``<prefix>/<station>/set/<name>`` -> a command request.

This communicator only parses the transport; what a command means, and the checks of its name and
value, are the dispatcher's (``edge_inspector.commands``), the same as on the control socket. Here:

- a retained command is refused (it would fire again at every reconnect);
- a payload over ``mqtt.command_max_bytes``, or that is not UTF-8, is refused;
- the payload (stripped) is the command's value: the pause reason, the recipe's name, ...

Parsing never raises: bad input is a :class:`Rejected` value. The publisher answers every command
that reaches the dispatcher on ``<base>/reply``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_inspector.commands import NAMES, Request, check

VIA = "mqtt"


@dataclass(frozen=True, slots=True)
class Rejected:
    name: str  # as received (shortened)
    why: str


def parse(name: str | None, payload: bytes, *, retained: bool = False, max_bytes: int = 256
          ) -> Request | Rejected:
    """The request for a message on ``set/<name>``, or why it is ignored."""
    shown = (name or "")[:40]
    if name is None or name not in NAMES:
        return Rejected(shown, f"unknown command (accepted: {', '.join(NAMES)})")
    if retained:
        return Rejected(shown, "retained commands are ignored (they would repeat on every reconnect)")
    if len(payload) > max_bytes:
        return Rejected(shown, f"payload of {len(payload)} bytes is over the limit of {max_bytes}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Rejected(shown, "payload is not UTF-8 text")
    request = Request(name, text, VIA)
    problem = check(request)
    return Rejected(shown, problem) if problem else request
