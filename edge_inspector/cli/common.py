"""Options shared by the subcommands."""

from __future__ import annotations

import argparse

from edge_inspector.config import Config, load_config
from edge_inspector.logs import configure


def add_config_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--config", "-c", required=required, metavar="FILE", help="the station's YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set policy.deadline_ms=500 (repeatable)")


def config_from(args: argparse.Namespace, logs: bool = True) -> Config:
    cfg = load_config(args.config, args.overrides)
    if logs:
        configure(cfg.logging.level, cfg.logging.format)
    return cfg
