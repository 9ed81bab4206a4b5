"""The one command table (Frigate's dispatcher): status, pause, resume, reload, recipe.

Every door is a communicator that only parses its transport and forwards a :class:`Request` to the
station's :class:`Dispatcher`: the control socket (and so ``edge-inspector ctl``), MQTT
``<base>/set/<name>``. The dispatcher checks the name and the value the same way for all of them,
runs the handler the daemon bound to the name, and answers a :class:`Reply`; a handler that raises
is an error reply, never a crash. ``Request.via`` names the door, for the log (and for a rule that
lets only some doors change the station: ``Command.changes``, checked here by :class:`Access`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)

TEXT_MAX = 200
RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    value: str | None  # what the value is; None: the command takes none
    changes: bool  # True: it changes what the station does


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("status", "the live state: camera, links, counters, last decisions, services", None, False),
    Command("pause", "every trigger becomes a NO-READ (reason paused, its fail-safe action) until "
            "resume", "an optional reason", True),
    Command("resume", "inspect again", "an optional note", True),
    Command("reload", "reload the config and recipe (as SIGHUP): parts in hand finish under the old "
            "ones", None, True),
    Command("recipe", "switch to a recipe named in mqtt.recipes (a reload with judge.recipe set)",
            "the recipe's name", True),
)}
NAMES = tuple(COMMANDS)


def known_names(names: list[str]) -> list[str]:
    """``names`` when each is a command of the table (a door's config lists them), else ValueError."""
    bad = [c for c in names if c not in COMMANDS]
    if bad:
        raise ValueError(f"unknown commands {bad} (known: {', '.join(COMMANDS)})")
    return names


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of a local door (the control socket's SO_PEERCRED)."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # supplementary group ids


@dataclass(frozen=True, slots=True)
class Request:
    name: str
    value: str = ""
    via: str = ""  # control socket, mqtt, ...
    peer: Peer | None = None  # who sent it, where the door knows


@dataclass(frozen=True, slots=True)
class Access:
    """Which door may send which command that changes the station (``Command.changes``); commands
    that only read are open to every door.

    ``doors``: via -> the changing commands that door may send; a door not named may send all (the
    daemon's own: SIGHUP). ``uids``/``gids``: a request that names its peer (the control socket)
    may change the station only from one of these users or groups; both None: any peer."""

    doors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    uids: frozenset[int] | None = None
    gids: frozenset[int] | None = None

    def refusal(self, request: Request, command: Command) -> str | None:
        if not command.changes:
            return None
        allowed = self.doors.get(request.via)
        if allowed is not None and command.name not in allowed:
            return (f"{command.name} is not enabled for {request.via} "
                    f"(allowed: {', '.join(sorted(allowed)) or 'none'})")
        peer = request.peer
        if peer is not None and (self.uids is not None or self.gids is not None):
            uids, gids = self.uids or frozenset(), self.gids or frozenset()
            if peer.uid not in uids and not ({peer.gid, *peer.groups} & gids):
                return f"uid {peer.uid} may not {command.name}: not in the users or groups allowed to"
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)  # e.g. {"paused": True}, {"status": {...}}
    detail: str = ""  # for a person: what happens next
    error: str = ""  # why it was refused

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, **self.data}
        if self.detail:
            out["detail"] = self.detail
        if self.error:
            out["error"] = self.error
        return out


def refused(error: str) -> Reply:
    return Reply(False, error=error)


Handler = Callable[[Request], Reply]


def check(request: Request) -> str | None:
    """Why the request is malformed (unknown name, bad value), or None. Shared by every door."""
    command = COMMANDS.get(request.name)
    if command is None:
        return f"unknown command {request.name[:40]!r} ({', '.join(NAMES)})"
    value = request.value
    if not isinstance(value, str):
        return "the value must be text"
    if command.value is None:
        return f"{command.name} takes no value" if value.strip() else None
    if len(value) > TEXT_MAX or any(not c.isprintable() for c in value):
        return f"the value is not short printable text (at most {TEXT_MAX} characters)"
    if command.name == "recipe" and not RECIPE_NAME.match(value):
        return "a recipe name is 1-64 letters, digits, '_', '.', '-'"
    return None


class Dispatcher:
    """Maps each command of :data:`COMMANDS` to its handler; thread-safe as the handlers are."""

    def __init__(self, handlers: Mapping[str, Handler], access: Access | None = None) -> None:
        missing, unknown = set(COMMANDS) - set(handlers), set(handlers) - set(COMMANDS)
        if missing or unknown:
            raise ValueError(f"handlers must cover the command table exactly: missing {sorted(missing)}, "
                             f"unknown {sorted(unknown)}")
        self.handlers = dict(handlers)
        self.access = access or Access()
        self.served = 0
        self.refused = 0

    def dispatch(self, request: Request) -> Reply:
        problem = check(request)
        if problem is None:
            problem = self.access.refusal(request, COMMANDS[request.name])
        if problem is not None:
            self.refused += 1
            log.warning("command_refused", command=request.name[:40], via=request.via, why=problem)
            return refused(problem)
        request = Request(request.name, request.value.strip(), request.via, request.peer)
        try:
            reply = self.handlers[request.name](request)
        except Exception as exc:  # noqa: BLE001 - a command never reaches the station as a crash
            log.error("command_failed", command=request.name, via=request.via,
                      error=f"{type(exc).__name__}: {exc}")
            reply = refused(f"{type(exc).__name__}: {exc}")
        self.served += 1
        if COMMANDS[request.name].changes:
            log.info("command", command=request.name, value=request.value, via=request.via, ok=reply.ok)
        return reply
