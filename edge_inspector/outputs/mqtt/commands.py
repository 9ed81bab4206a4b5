"""Validation of commands arriving on ``<prefix>/<station>/set/<name>``.

Only a small set is accepted; everything else is rejected with a reason that the publisher logs:

- ``set/pause``: empty payload, or a short reason text (UTF-8, printable, at most 200 characters);
- ``set/resume``: empty payload (a short text is accepted and logged, like pause's);
- ``set/recipe``: the recipe's name, one of ``mqtt.recipes``.

A retained command is refused (it would fire again at every reconnect), and so is any payload over
``mqtt.command_max_bytes``. Validation never raises: bad input is a :class:`Rejected` value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

NAMES = ("pause", "resume", "recipe")
_RECIPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TEXT_MAX = 200


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # one of NAMES
    value: str  # the pause reason, the recipe name; "" when none


@dataclass(frozen=True, slots=True)
class Rejected:
    name: str  # as received (shortened)
    why: str


def _text(payload: bytes) -> str | None:
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if len(text) > _TEXT_MAX or any(not c.isprintable() for c in text):
        return None
    return text


def parse(name: str | None, payload: bytes, *, retained: bool = False, max_bytes: int = 256,
          allowed_recipes: tuple[str, ...] | list[str] = ()) -> Command | Rejected:
    """The command for a message on ``set/<name>``, or why it is ignored."""
    shown = (name or "")[:40]
    if name is None or name not in NAMES:
        return Rejected(shown, f"unknown command (accepted: {', '.join(NAMES)})")
    if retained:
        return Rejected(shown, "retained commands are ignored (they would repeat on every reconnect)")
    if len(payload) > max_bytes:
        return Rejected(shown, f"payload of {len(payload)} bytes is over the limit of {max_bytes}")
    text = _text(payload)
    if text is None:
        return Rejected(shown, f"payload is not short printable UTF-8 text (at most {_TEXT_MAX} characters)")
    if name == "recipe":
        if not _RECIPE.match(text):
            return Rejected(shown, "a recipe name is 1-64 letters, digits, '_', '.', '-'")
        if text not in allowed_recipes:
            return Rejected(shown, f"recipe {text!r} is not in mqtt.recipes")
    return Command(name, text)


def apply(command: Command, station: Any, recipes: dict[str, Path]) -> None:
    """Act on a validated command. Pause and resume flip ``station.paused`` (a paused station still
    decides every trigger: a NO-READ with reason ``paused``); a recipe switch goes through the reload
    service: ``judge.recipe=<file>`` joins the station's overrides and a reload is requested (it is
    validated and built beside the running stages, and swapped in between two parts)."""
    if command.name == "pause":
        if not station.paused.is_set():
            station.paused.set()
            log.warning("station_paused", via="mqtt", reason=command.value,
                        detail="every trigger is a NO-READ (reason paused) until resume")
    elif command.name == "resume":
        if station.paused.is_set():
            station.paused.clear()
            log.warning("station_resumed", via="mqtt", reason=command.value)
    elif command.name == "recipe":
        judge = station.cfg.judge
        if "recipe" not in type(judge).model_fields or not hasattr(station, "request_reload"):
            log.warning("mqtt_command_unsupported", command="recipe", value=command.value,
                        why=f"the {judge.kind} judge has no recipe")
            return
        station.overrides = [o for o in station.overrides if not o.startswith("judge.recipe=")] + [
            f"judge.recipe={recipes[command.value]}"]
        station.request_reload(f"mqtt set/recipe {command.value}")
