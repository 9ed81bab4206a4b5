"""``edge-inspector cameras [--json]`` and ``edge-inspector grab --camera NAME -o FILE.png``.

``register(subparsers)`` adds both subcommands; each sets ``func(args) -> exit code``. A camera that
cannot be opened raises :class:`~edge_inspector.errors.StartupError`, which the CLI prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
from rich.console import Console
from rich.table import Table

from edge_inspector.capture.discovery import grab_one, list_cameras, resolve_camera
from edge_inspector.errors import StartupError


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001 - argparse's type
    p = subparsers.add_parser("cameras", help="list the cameras pylon and OpenCV see",
                              description="List the Basler (pylon) and USB (V4L2) cameras.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_cameras)

    g = subparsers.add_parser("grab", help="save one frame from a camera",
                              description="Open a camera, take one frame, save it, close it.")
    g.add_argument("--camera", required=True, metavar="NAME",
                   help="a Basler serial number or user-defined name, 'basler' (the first one), "
                        "'opencv:N' (USB index), an rtsp:// or http:// URL, or a video file")
    g.add_argument("-o", "--output", required=True, type=Path, metavar="FILE.png",
                   help="where to write the image (PNG, or any format OpenCV writes)")
    g.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="how long to wait for the frame (default 5 s)")
    g.set_defaults(func=cmd_grab)


def cmd_cameras(args: argparse.Namespace) -> int:
    cameras = list_cameras()
    if args.json:
        sys.stdout.write(json.dumps([c.to_json() for c in cameras], indent=2) + "\n")
        return 0
    console = Console()
    if not cameras:
        console.print("No cameras found (pylon and V4L2).")
        return 0
    table = Table(title="Cameras")
    for column in ("backend", "vendor", "model", "serial", "interface", "name", "address"):
        table.add_column(column)
    for c in cameras:
        table.add_row(c.backend, c.vendor, c.model, c.serial, c.interface, c.name, c.address)
    console.print(table)
    return 0


def cmd_grab(args: argparse.Namespace) -> int:
    frame = grab_one(resolve_camera(args.camera), timeout_s=args.timeout)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        ok = cv2.imwrite(str(args.output), frame.image)
    except cv2.error as exc:
        raise StartupError(f"cannot write {args.output}: {exc}") from exc
    if not ok:
        raise StartupError(f"cannot write {args.output}: unknown image extension or unwritable path")
    shape = "x".join(map(str, frame.image.shape[1::-1]))  # type: ignore[union-attr]
    Console(stderr=True).print(f"saved {args.output} ({shape}, {frame.source})")
    return 0
