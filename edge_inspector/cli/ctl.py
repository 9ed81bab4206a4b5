"""``edge-inspector ctl pause|resume|reload``: commands to the running daemon over its control socket."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_inspector.cli.common import add_config_options
from edge_inspector.errors import EdgeInspectorError

HELP = {
    "pause": "every trigger becomes a NO-READ (reason paused, its fail-safe action) until resume",
    "resume": "inspect again",
    "reload": "reload the config and recipe (as SIGHUP): parts in hand finish under the old ones",
}


def register(sub) -> None:
    p = sub.add_parser("ctl", help="pause, resume or reload the running daemon")
    p.add_argument("command", choices=list(HELP), help="; ".join(f"{k}: {v}" for k, v in HELP.items()))
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
        answer = request(path, args.command)
    except ControlError as exc:
        raise EdgeInspectorError(f"{args.command}: {exc}") from None
    detail = answer.get("detail") or ("paused" if answer.get("paused") else "inspecting")
    sys.stdout.write(f"{args.command}: ok ({detail})\n")
    return 0
