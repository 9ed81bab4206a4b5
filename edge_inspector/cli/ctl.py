"""``edge-inspector ctl <command> [VALUE]``: the command table, sent to the running daemon over its
control socket (the same table MQTT serves on ``<base>/set/<name>``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_inspector.cli.common import add_config_options
from edge_inspector.commands import COMMANDS
from edge_inspector.errors import EdgeInspectorError


def register(sub) -> None:
    p = sub.add_parser("ctl", help="send a command to the running daemon (" + ", ".join(COMMANDS) + ")")
    p.add_argument("command", choices=list(COMMANDS),
                   help="; ".join(f"{c.name}: {c.help}" for c in COMMANDS.values()))
    p.add_argument("value", nargs="?", default="", metavar="VALUE",
                   help="; ".join(f"{c.name}: {c.value}" for c in COMMANDS.values() if c.value))
    add_config_options(p)
    p.add_argument("--socket", metavar="PATH", help="the daemon's control socket instead of the config's")
    p.set_defaults(func=cmd_ctl)


def cmd_ctl(args: argparse.Namespace) -> int:
    from edge_inspector.service.control import ControlError, request

    if args.socket:
        path = Path(args.socket)
    else:
        from edge_inspector.config import load_config
        from edge_inspector.service.config import control_socket_path

        path = control_socket_path(load_config(args.config, args.overrides))
    try:
        answer = request(path, args.command, args.value)
    except ControlError as exc:
        raise EdgeInspectorError(f"{args.command}: {exc}") from None
    if args.command == "status":
        sys.stdout.write(json.dumps(answer["status"], indent=2, default=str) + "\n")
        return 0
    detail = answer.get("detail") or ("paused" if answer.get("paused") else "inspecting")
    sys.stdout.write(f"{args.command}: ok ({detail})\n")
    return 0
