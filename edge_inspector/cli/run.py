"""``edge-inspector run``: the daemon."""

from __future__ import annotations

import argparse

from edge_inspector.cli.common import add_config_options, config_from


def register(sub) -> None:
    p = sub.add_parser("run", help="run the station (the daemon)")
    add_config_options(p, required=True)
    p.add_argument("--max-parts", type=int, default=None, metavar="N", help="stop after N triggers")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from edge_inspector.daemon import Station
    from edge_inspector.logs import stdout_to_log

    cfg = config_from(args)
    with stdout_to_log("daemon"):  # the daemon writes nothing to stdout: what libraries print is logged
        return Station.build(cfg, args.config, args.overrides).run(max_parts=args.max_parts)
