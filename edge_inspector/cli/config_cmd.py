"""``edge-inspector config check|schema``."""

from __future__ import annotations

import argparse
import json
import sys



def register(sub) -> None:
    p = sub.add_parser("config", help="check a config file, or print the config's JSON schema")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = csub.add_parser("check", help="validate a config file")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    check.add_argument("--show", action="store_true", help="print the effective config as JSON")
    check.set_defaults(func=cmd_check)
    schema = csub.add_parser("schema", help="print the JSON schema of the config")
    schema.set_defaults(func=cmd_schema)


def cmd_check(args: argparse.Namespace) -> int:
    from edge_inspector.config import load_config

    cfg = load_config(args.file, args.overrides)
    if args.show:
        sys.stdout.write(cfg.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(f"{args.file}: ok (config {cfg.fingerprint()})\n")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from edge_inspector.config import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return 0
