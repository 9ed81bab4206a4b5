"""Evaluate regions + judge + policy on a labelled recording, or the VLM on an MMAD-format set.

    python tools/evaluate.py --manifest rec.jsonl [--config station.yaml] [--set k=v] [--out DIR]
    python tools/evaluate.py --mmad mmad.json --model-dir DIR ...    (the same as tools/mmad.py)

A labelled manifest is the ``inspect`` manifest (JSON lines, paths relative to the manifest) with
``"label": "good" | "defective"`` and the ground truth as ``"boxes": [[x1, y1, x2, y2], ...]`` and/or
``"polygons": [[[x, y], ...], ...]``. Printed: image-level accuracy, overkill (good parts rejected)
and miss (defective parts passed) rates, box recall and precision at IoU > 0.33 (boxes and regions
matched one to one), the cascade's skip rate (parts decided without the VLM). Written:
DIR/report.json and DIR/worst.png (the worst misses and false alarms with ground truth in green and
boxes in red).

``--mmad mmad.json ...`` hands the whole command line to tools/mmad.py, which owns the MMAD protocol
(questions, prompt, scoring, the paper's table).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_inspector.learn.evaluation import is_defective, match_boxes, score_parts, truth_boxes  # noqa: E402,F401
from edge_inspector.regions.boxes import iou  # noqa: E402,F401 - after the path set-up (bare checkout)


def worst(items: list[dict], results: list[dict], k: int) -> tuple[list[int], list[int]]:
    """The indices of the k worst misses (lowest score first) and false alarms (highest first)."""
    misses = [i for i, (it, r) in enumerate(zip(items, results))
              if is_defective(it) is True and r["action"] != "REJECT"]
    alarms = [i for i, (it, r) in enumerate(zip(items, results))
              if is_defective(it) is False and r["action"] == "REJECT"]
    key = lambda i: results[i]["score"] if results[i]["score"] is not None else -math.inf  # noqa: E731
    return sorted(misses, key=key)[:k], sorted(alarms, key=key, reverse=True)[:k]


def write_grid(path: Path, items: list[dict], results: list[dict], misses: list[int], alarms: list[int],
               tile: int = 320) -> bool:
    import cv2
    import numpy as np

    from edge_inspector.imageio import load_image

    tiles = []
    for kind, idx in (("MISS", misses), ("FALSE ALARM", alarms)):
        for i in idx:
            try:
                img = load_image(items[i]["image"])
            except ValueError:
                continue
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img.copy()
            for poly in items[i].get("polygons") or []:
                cv2.polylines(img, [np.round(np.array(poly)).astype(np.int32)], True, (0, 255, 0), 2)
            for b in items[i].get("boxes") or []:
                cv2.rectangle(img, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 255, 0), 2)
            for b in results[i].get("regions") or []:
                x1, y1, x2, y2 = b["box"]
                cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (0, 0, 255), 2)
            s = tile / max(img.shape[:2])
            img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))))
            canvas = np.full((tile + 22, tile, 3), 32, np.uint8)
            canvas[22:22 + img.shape[0], : img.shape[1]] = img
            cv2.putText(canvas, f"{kind} {results[i]['id']} s={results[i]['score']}"[:48], (4, 15),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(canvas)
    if not tiles:
        return False
    cols = min(4, len(tiles))
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 32))
    rows = [np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return bool(cv2.imwrite(str(path), np.vstack(rows)))


def _progress(disable: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=disable)


def run_manifest(args: argparse.Namespace) -> dict[str, Any]:
    from edge_inspector.cli.inspect import OfflineInspector, manifest_items

    items = list(manifest_items(Path(args.manifest)))
    ns = argparse.Namespace(config=args.config, overrides=args.overrides)
    engine = OfflineInspector(ns, any(i.get("reference") for i in items))
    results = []
    try:
        with _progress(args.no_progress) as bar:
            task = bar.add_task("inspecting", total=len(items))
            for item in items:
                results.append(engine.run(item))
                bar.advance(task)
    finally:
        engine.close()
    report = score_parts(items, results, args.iou)
    misses, alarms = worst(items, results, args.worst)
    out = Path(args.out)
    report["worst_misses"] = [results[i]["id"] for i in misses]
    report["worst_false_alarms"] = [results[i]["id"] for i in alarms]
    grid = out / "worst.png"
    report["grid"] = str(grid) if write_grid(grid, items, results, misses, alarms) else None
    report["per_part"] = [{"id": r["id"], "label": items[i].get("label"), "decision": r["decision"],
                           "score": r["score"], "boxes": [b["box"] for b in r["regions"]],
                           "decided_by": r["decided_by"]} for i, r in enumerate(results)]
    return report


def print_table(report: dict[str, Any]) -> None:
    keys = ["parts", "good", "defective", "accuracy", "overkill_rate", "miss_rate", "no_reads", "box_recall",
            "box_precision", "gt_regions", "boxes", "cascade_skip_rate"]
    width = max(map(len, keys))
    for k in keys:
        print(f"{k:<{width}}  {report[k]}")
    print(f"{'grid':<{width}}  {report['grid']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--mmad" or a.startswith("--mmad=") for a in argv):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import mmad  # tools/mmad.py owns the MMAD protocol; the same flags work there

        return mmad.main(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="a labelled manifest (JSON lines)")
    ap.add_argument("--config", "-c", help="the station's YAML config")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="evaluation", help="folder for report.json and worst.png")
    ap.add_argument("--iou", type=float, default=0.33, help="IoU above which a box matches a region")
    ap.add_argument("--worst", type=int, default=8, help="misses and false alarms in the grid, each")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from edge_inspector.errors import EdgeInspectorError

    try:
        report = run_manifest(args)
    except EdgeInspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print_table(report)
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
