"""``edge-inspector doctor``: a table of checks (cameras, model, GPU, serial and bridge, broker, disk,
database), each failure with what to do about it; exits 1 when something fails."""

from __future__ import annotations

import argparse
import json
import sys

from edge_inspector.cli.common import add_config_options


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check that the station can inspect; say what to fix")
    add_config_options(p)
    p.add_argument("--serial", metavar="PORT", help="check this serial port for the bridge instead of the config's")
    p.add_argument("--baud", type=int, default=None, help="the bridge's baud rate (default: the config's, 115200)")
    p.add_argument("--broker", metavar="HOST[:PORT]", help="check this MQTT broker instead of the config's")
    p.add_argument("--no-hashes", action="store_true", help="do not verify the model files' SHA256SUMS")
    p.add_argument("--timeout", type=float, default=3.0, metavar="S", help="per device/network check (3 s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_doctor)


STYLE = {"PASS": "bold green", "WARN": "bold yellow", "FAIL": "bold white on red", "SKIP": "dim"}


def render(results, out=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=out or sys.stdout, width=160)
    table = Table(title="edge-inspector doctor", show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    table.add_column("what to do", overflow="fold", ratio=2)
    for r in results:
        s = STYLE[r.result]
        table.add_row(r.check, f"[{s}]{r.result}[/{s}]", escape(r.detail), escape(r.fix))
    console.print(table)
    failed = [r.check for r in results if r.result == "FAIL"]
    console.print(f"[bold red]{len(failed)} failed: {', '.join(failed)}[/bold red]" if failed
                  else "[bold green]all checks passed[/bold green]")


def cmd_doctor(args: argparse.Namespace) -> int:
    from edge_inspector.config import load_config
    from edge_inspector.service.doctor import Options, run_checks

    cfg = load_config(args.config, args.overrides)  # a bad config is exit 2 with the key named
    results = run_checks(cfg, Options(serial=args.serial, baud=args.baud, broker=args.broker,
                                      hashes=not args.no_hashes, timeout_s=args.timeout))
    if args.json:
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    else:
        render(results)
    return 1 if any(r.result == "FAIL" for r in results) else 0
