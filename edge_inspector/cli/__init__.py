"""The ``edge-inspector`` command. Each subcommand lives in its own module with a ``register``.

Errors meant for people (:class:`EdgeInspectorError`) are printed without a traceback and exit with
their code: 2 for a bad config, 3 for a start-up failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edge_inspector import __version__
from edge_inspector.errors import EdgeInspectorError
from edge_inspector.logs import configure

COMMANDS = ["run", "status", "inspect", "config_cmd", "demo", "doctor", "ctl", "review", "dataset", "train",
            "model"]
OPTIONAL = ["cameras"]  # modules that may be absent in a trimmed install


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-inspector", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-inspector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS + OPTIONAL:
        try:
            module = importlib.import_module(f"edge_inspector.cli.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL and exc.name == f"edge_inspector.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure("warning", "console")  # logs go to stderr; commands with a config set their own level
    try:
        return int(args.func(args) or 0)
    except EdgeInspectorError as exc:
        sys.stderr.write(f"edge-inspector: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
