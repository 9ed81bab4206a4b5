"""The BSData ball-screw subset (../shared/data/bsdata) as a texture-model evaluation.

    python tools/bsdata.py [--data ../shared/data/bsdata] --out /tmp/bsdata-eval [--set regions.k=v]

Writes into --out (never into the repo; images are linked, not copied): ``ref/`` and ``good/`` with
the authors' train split, each image beside a ``NAME.mask.png`` of its pitting polygons (the texture
model learns only the areas outside them), ``station.yaml`` (regions kind texture), ``test.jsonl``
(the test split, label defective, polygons as ground truth) and ``unlabelled.jsonl`` (the images
without annotation, which are *not* certified good: no label). Then runs tools/evaluate.py on both.
The figures: box recall at IoU > 0.33 of the test split's polygons, the share of defective test
images flagged (1 - miss rate), and the boxes per unlabelled image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bsdata"


def load_index(data: Path) -> list[dict]:
    """The index with each image's polygons (a list of N x 2 point lists; empty when unannotated)."""
    items = []
    for e in json.loads((data / "index.json").read_text(encoding="utf-8")):
        polys = []
        if e.get("labels"):
            label = json.loads((data / e["labels"]).read_text(encoding="utf-8"))
            polys = [s["points"] for s in label.get("shapes", [])
                     if s.get("shape_type", "polygon") == "polygon"]
        items.append({**e, "path": str(data / e["image"]), "polygons": polys})
    return items


def polygon_mask(shape: tuple[int, int], polygons: list) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    for p in polygons:
        cv2.fillPoly(m, [np.round(np.array(p, np.float64)).astype(np.int32)], 255)
    return m


def _link(src: str, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    os.symlink(src, dst)


def prepare(data: Path, out: Path) -> dict[str, Path]:
    items = load_index(data)
    train = [i for i in items if i["split"] == "train"]
    if not train:
        raise SystemExit(f"{data}: no train split in index.json")
    for sub in ("ref", "good"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for k, it in enumerate(train):
        folder = out / ("ref" if k == 0 else "good")
        name = Path(it["image"]).name
        _link(it["path"], folder / name)
        img = cv2.imread(it["path"], cv2.IMREAD_GRAYSCALE)
        mask = polygon_mask(img.shape[:2], it["polygons"])
        cv2.imwrite(str(folder / (Path(name).stem + ".mask.png")), mask)
    ref = next((out / "ref").glob("*.jpg"))
    cfg = {"station": {"name": "bsdata", "data_dir": str(out / "data")},
           "regions": {"kind": "texture", "reference": str(ref), "good_images": str(out / "good")},
           "images": {"keep": False}, "logging": {"level": "warning"}}
    (out / "station.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    with (out / "test.jsonl").open("w") as fh:
        for it in items:
            if it["split"] == "test":
                fh.write(json.dumps({"id": Path(it["image"]).stem, "image": it["path"], "label": "defective",
                                     "polygons": it["polygons"]}) + "\n")
    with (out / "unlabelled.jsonl").open("w") as fh:
        for it in items:
            if it["split"] is None and not it["polygons"]:
                fh.write(json.dumps({"id": Path(it["image"]).stem, "image": it["path"]}) + "\n")
    return {"config": out / "station.yaml", "test": out / "test.jsonl",
            "unlabelled": out / "unlabelled.jsonl"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    if not (args.data / "index.json").is_file():
        print(f"error: {args.data} holds no BSData subset (index.json)", file=sys.stderr)
        return 2
    paths = prepare(args.data, args.out)
    sys.path.insert(0, str(REPO / "tools"))
    from evaluate import main as evaluate

    sets = [x for o in args.overrides for x in ("--set", o)]
    print("== test split (annotated pitting)")
    rc = evaluate(["--manifest", str(paths["test"]), "--config", str(paths["config"]), *sets,
                   "--out", str(args.out / "eval-test")])
    report = json.loads((args.out / "eval-test" / "report.json").read_text())
    print("== unlabelled images (not certified good)")
    rc |= evaluate(["--manifest", str(paths["unlabelled"]), "--config", str(paths["config"]), *sets,
                    "--out", str(args.out / "eval-unlabelled")])
    un = json.loads((args.out / "eval-unlabelled" / "report.json").read_text())
    boxes = [len(p["boxes"]) for p in un["per_part"]]
    print(f"\nbsdata: pitting box recall@IoU>0.33 {report['box_recall']} ({report['gt_regions']} polygons), "
          f"defective test images flagged {1 - report['miss_rate']:.3f}, boxes per test image "
          f"{report['boxes'] / max(report['parts'], 1):.2f}, unlabelled images with a box "
          f"{sum(b > 0 for b in boxes)}/{len(boxes)} ({sum(boxes)} boxes)")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
