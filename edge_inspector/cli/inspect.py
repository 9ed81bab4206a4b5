"""``edge-inspector inspect``: one image, or a manifest of many, offline (no deadline).

A manifest is JSON lines ``{"id": ..., "image": path, "reference": optional path}``; relative paths
are relative to the manifest's folder. Output is one JSON line per input, in order, also for an
unreadable image (decision NO-READ with the reason).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_inspector.cli.common import add_config_options, config_from
from edge_inspector.errors import ConfigError, EdgeInspectorError, ImageError


def register(sub) -> None:
    p = sub.add_parser("inspect", help="inspect one image or a manifest of images")
    p.add_argument("image", nargs="?", metavar="IMAGE")
    p.add_argument("--reference", "-r", metavar="REF", help="a known-good image of the same product "
                   "(one-shot)")
    p.add_argument("--manifest", "-m", metavar="FILE.jsonl", help="inspect every line of a manifest")
    p.add_argument("--json", action="store_true", help="print JSON (one line per image)")
    p.add_argument("--camera", metavar="NAME", help="a multi-camera config: inspect as this camera "
                   "(its regions model, recipe and policy; default: the first camera)")
    add_config_options(p)
    p.set_defaults(func=cmd_inspect)


def manifest_items(path: Path) -> Iterator[dict[str, Any]]:
    base = path.resolve().parent
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EdgeInspectorError(f"{path}: cannot read the manifest ({exc.strerror})") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield {"id": f"line-{n}", "error": f"{path} line {n}: not JSON ({exc.msg})"}
            continue
        if not isinstance(item, dict) or "image" not in item:
            yield {"id": f"line-{n}", "error": f"{path} line {n}: needs an \"image\" key"}
            continue
        item.setdefault("id", f"line-{n}")
        for key in ("image", "reference"):
            if item.get(key):
                p = Path(item[key])
                item[key] = str(p if p.is_absolute() else base / p)
        yield item


class OfflineInspector:
    """Builds the stages once; each image becomes a Frame with no deadline."""

    def __init__(self, args: argparse.Namespace, has_reference: bool) -> None:
        from edge_inspector.capture.base import PartFactory
        from edge_inspector.stages import build_stages

        cfg = config_from(args)
        cams = cfg.camera_configs()  # one camera's stages: the named one, else the first
        camera = getattr(args, "camera", None)
        if camera is not None and camera not in cams:
            raise ConfigError(f"--camera {camera}: no such camera in the config ({', '.join(cams)})")
        cfg = cams[camera] if camera is not None else next(iter(cams.values()))
        if cfg.regions.reference is None and getattr(cfg.regions, "good_images", None) is None \
                and not has_reference:
            raise ConfigError("regions.reference: give --reference (one-shot), a manifest with "
                              "references, or a config whose regions.reference is set")
        self.stages = build_stages(cfg)  # the daemon's builder: the same stages, the same settings
        self.inspector = self.stages.inspector
        self.parts = PartFactory(deadline_s=math.inf, run_tag="inspect")
        from edge_inspector.imageio import DEFAULT_MAX_PIXELS

        self.max_pixels = getattr(cfg.capture, "max_pixels", DEFAULT_MAX_PIXELS)  # a folder config's
        self._refs: dict[str, Any] = {}

    def reference(self, path: str | None):
        from edge_inspector.imageio import read_image

        if not path:
            return None
        if path not in self._refs:
            self._refs[path] = read_image(path, what="reference")
        return self._refs[path]

    def run(self, item: dict[str, Any]) -> dict[str, Any]:
        from edge_inspector.logs import stdout_to_log

        with stdout_to_log("inspect"):  # stdout carries the results only
            return self._run(item)

    def _run(self, item: dict[str, Any]) -> dict[str, Any]:
        from edge_inspector.imageio import load_image

        trigger = self.parts.trigger("inspect")
        trigger = type(trigger)(part_id=str(item["id"]), seq=trigger.seq, camera="inspect",
                                t_mono=trigger.t_mono, t_wall=trigger.t_wall,
                                deadline_mono=trigger.deadline_mono)
        error = item.get("error")
        image = reference = None
        if error is None:
            try:
                image = load_image(item["image"], self.max_pixels)
                reference = self.reference(item.get("reference"))
            except (ImageError, EdgeInspectorError) as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad image must not end the manifest
                error = f"{item['image']}: {type(exc).__name__}: {exc}"
        frame = trigger.frame(image, source=str(item.get("image", "")), error=error, reference=reference)
        result = self.inspector.inspect(frame).to_json()
        result["id"] = item["id"]
        return result

    def close(self) -> None:
        self.stages.close()


def _human(r: dict[str, Any]) -> str:
    lines = [f"{r['id']}: {r['decision']} ({r['reason']}) score {r['score']}  {r['detail']}"]
    lines += [f"  box {b['box']} score {b['score']}" for b in r["regions"]]
    lines.append("  timings " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["timings_ms"].items()))
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    if bool(args.image) == bool(args.manifest):
        raise EdgeInspectorError("give either IMAGE or --manifest FILE.jsonl")
    if args.manifest:
        items = list(manifest_items(Path(args.manifest)))
        has_ref = any(i.get("reference") for i in items) or bool(args.reference)
        if args.reference:
            for i in items:
                i.setdefault("reference", args.reference)
    else:
        items = [{"id": Path(args.image).name, "image": args.image, "reference": args.reference}]
        has_ref = bool(args.reference)
    engine = OfflineInspector(args, has_ref)
    try:
        for item in items:
            r = engine.run(item)
            sys.stdout.write((json.dumps(r) if args.json else _human(r)) + "\n")
            sys.stdout.flush()
    finally:
        engine.close()
    return 0
