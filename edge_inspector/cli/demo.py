"""``edge-inspector demo prepare``: write the demo product's reference and known-good images."""

from __future__ import annotations

import argparse
import sys

from edge_inspector.cli.common import add_config_options, config_from
from edge_inspector.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("demo", help="the embedded demo")
    dsub = p.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    prep = dsub.add_parser("prepare", help="write the reference and known-good images the demo "
                           "config points at")
    add_config_options(prep, required=True)
    prep.add_argument("--good", type=int, default=8, help="how many known-good images (default 8)")
    prep.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from edge_inspector.capture.demo import prepare_product

    cfg = config_from(args)
    cams = cfg.camera_configs()  # one camera, or each of ``cameras:``
    key = (lambda name: "capture") if not cfg.multi_camera else (
        lambda name: f"cameras.{[c.name for c in cfg.cameras].index(name)}.capture")
    demos = {name: c for name, c in cams.items() if c.capture.kind == "demo"}
    if not demos:
        raise ConfigError(f"{key(next(iter(cams)))}.kind: demo prepare needs the demo source "
                          "(capture.kind: demo)")
    for name, c in demos.items():
        if getattr(c.regions, "reference", None) is None:
            raise ConfigError(f"regions.reference: demo prepare needs a path to write camera "
                              f"{name}'s reference to")
        written = prepare_product(c.capture, c.regions.reference, c.regions.good_images, args.good)
        sys.stdout.write(f"wrote {len(written)} images of design {c.capture.design_seed} "
                         f"under {c.regions.reference.parent}\n")
    return 0
