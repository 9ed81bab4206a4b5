"""The BSData ball-screw subset (../shared/data/bsdata) as a texture-model evaluation.

    python tools/bsdata.py --out /tmp/bsdata-eval [--data DIR] [--set regions.k=v]    # the station
    python tools/bsdata.py --out /tmp/bsdata-eval --sweep                             # + the sweep
    python tools/bsdata.py --out /tmp/bsdata-cv --cv 5                                # train split only

The data folder defaults to ``../shared/data/bsdata`` beside the repository (or $BSDATA_DIR).

Station run (default): writes into --out (never into the repo; images are linked, not copied)
``ref/`` and ``good/`` with the authors' train split, each image beside a ``NAME.mask.png`` of its
pitting polygons (the texture model learns only the areas outside them), ``station.yaml`` (regions
kind texture), ``test.jsonl`` (the test split, label defective, polygons as ground truth) and
``unlabelled.jsonl`` (the images without annotation, which are *not* certified good: no label), then
runs tools/evaluate.py on both. The figures: pit recall at IoU > 0.33 (boxes and polygons matched one
to one), the share of defective test images flagged, and the boxes per unannotated image.

``--sweep``: the model fitted once on the train split; every test and unannotated image's map
computed once and boxed at each sensitivity of the range. Writes sweep.json and sweep.png (pit recall
against boxes per unannotated image, the default marked).

``--cv K``: the choices' figures, from the train split alone: K folds grouped by the part's position
(images of one position over time share their pits), each fold scored by a model fitted on the
others, at each sensitivity. A false box here touches no annotated pit's box; the type-2 images (the
kind of the unannotated ones) are counted apart. Writes cv.json and cv.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("BSDATA_DIR", REPO.parent / "shared" / "data" / "bsdata"))
SENSITIVITIES = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.6, 2.0)


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


def polygon_boxes(polygons: list) -> list[list[float]]:
    return [[min(x for x, _ in p), min(y for _, y in p), max(x for x, _ in p), max(y for _, y in p)]
            for p in polygons]


def position(item: dict) -> str:
    """The group of an image for cross-validation: the drive's angular position (type 2: one position
    photographed over time shows the same pits growing), else the spindle."""
    name = Path(item["image"]).stem
    m = re.match(r"\d+_\d+_(\d+_\d+)_crop", name)
    return m.group(1) if m else name.split("_")[0][:8]


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


# -- the sweep -------------------------------------------------------------------------------------
def texture_config(overrides: list[str]):
    """The station's texture defaults with ``--set regions.k=v`` overrides."""
    from edge_inspector.config import load_config

    cfg = load_config(None, ["regions.kind=texture", *overrides])
    return cfg.regions


def fit(cfg, items: list[dict]):
    from edge_inspector.regions.texture import TextureModel

    images = [cv2.imread(it["path"]) for it in items]
    masks = [polygon_mask(im.shape[:2], it["polygons"]) for im, it in zip(images, items)]
    return TextureModel(cfg, images, masks)


def scored(model, items: list[dict]) -> list[dict]:
    """Each image's cell map and grey image, computed once (the sweep boxes it at every sensitivity)."""
    from edge_inspector.regions.texture import gray_of

    out = []
    for it in items:
        img = cv2.imread(it["path"])
        cells, s = model._grid(img)
        out.append({**it, "cells": cells, "s": s, "shape": img.shape[:2], "gray": gray_of(img)})
    return out


def _touch(b: list, g: list) -> bool:
    return b[0] < g[2] and g[0] < b[2] and b[1] < g[3] and g[1] < b[3]


def sweep_rows(model, pitted: list[dict], clean: list[dict], sensitivities=SENSITIVITIES) -> list[dict]:
    """Per sensitivity: pit recall (IoU > 0.33, one to one) over ``pitted``, images with a box, boxes
    that touch no pit per pitted image (by drive type), and boxes per image of ``clean``."""
    from evaluate import match_boxes

    rows = []
    for sens in sensitivities:
        t = model.cfg.sensitivity / sens  # maps are in units of the model's own (sensitivity 1) threshold
        hit = pits = flagged = 0
        false = {1: [0, 0], 2: [0, 0]}
        for r in pitted:
            boxes = [b.as_list() for b in model.boxes(r["cells"], r["s"], r["shape"], t, r["gray"])]
            truth = polygon_boxes(r["polygons"])
            hit += len(match_boxes(truth, boxes))
            pits += len(truth)
            flagged += bool(boxes)
            apart = sum(1 for b in boxes if not any(_touch(b, g) for g in truth))
            kind = false.setdefault(int(r.get("bsd_type") or 2), [0, 0])
            kind[0] += apart
            kind[1] += 1
        clean_boxes = [len(model.boxes(r["cells"], r["s"], r["shape"], t, r["gray"])) for r in clean]
        rows.append({"sensitivity": sens, "recall": round(hit / max(pits, 1), 4), "pits": pits, "found": hit,
                     "images_flagged": round(flagged / max(len(pitted), 1), 4),
                     "false_boxes_per_image": {f"type{k}": round(v[0] / v[1], 3)
                                               for k, v in false.items() if v[1]},
                     "boxes_per_unannotated_image": (round(sum(clean_boxes) / len(clean_boxes), 3)
                                                     if clean else None)})
    return rows


def plot(path: Path, rows: list[dict], x_key, title: str, x_label: str, marked: float = 1.0) -> None:
    """Pit recall against the false-box rate, one point per sensitivity, drawn with OpenCV."""
    w, h, left, right, top, bottom = 760, 520, 80, 30, 50, 70
    img = np.full((h, w, 3), 255, np.uint8)
    xs = [x_key(r) for r in rows]
    x_max = min(2.0, max(0.5, float(np.ceil(max(xs) * 4) / 4))) if xs else 1.0  # the low false-box end
    px = lambda x: int(left + (w - left - right) * min(x, x_max) / x_max)  # noqa: E731
    py = lambda y: int(h - bottom - (h - top - bottom) * y)  # noqa: E731
    font, grey, black = cv2.FONT_HERSHEY_SIMPLEX, (200, 200, 200), (0, 0, 0)
    for k in range(6):
        y = k / 5
        cv2.line(img, (left, py(y)), (w - right, py(y)), grey, 1)
        cv2.putText(img, f"{y:.1f}", (left - 40, py(y) + 5), font, 0.45, black, 1, cv2.LINE_AA)
    for k in range(9):
        x = x_max * k / 8  # the grid
        cv2.line(img, (px(x), top), (px(x), h - bottom), grey, 1)
        cv2.putText(img, f"{x:.2f}", (px(x) - 16, h - bottom + 20), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)
    cv2.line(img, (left, py(0.8)), (w - right, py(0.8)), (0, 160, 0), 1)  # the targets
    if 0.2 <= x_max:
        cv2.line(img, (px(0.2), top), (px(0.2), h - bottom), (0, 160, 0), 1)
    pts = [(px(x), py(r["recall"])) for x, r in zip(xs, rows)]
    for a, b in zip(pts, pts[1:]):
        cv2.line(img, a, b, (200, 80, 0), 2, cv2.LINE_AA)
    last = None
    for p, r in zip(pts, rows):
        is_default = abs(r["sensitivity"] - marked) < 1e-9
        colour = (0, 0, 220) if is_default else (200, 80, 0)
        cv2.circle(img, p, 7 if is_default else 4, colour, -1, cv2.LINE_AA)
        if last is not None and abs(p[0] - last[0]) + abs(p[1] - last[1]) < 16 and not is_default:
            continue  # labels of points on top of each other would overlap
        last = p
        label = f"{r['sensitivity']:g}" + (f" (x={x_key(r):.1f})" if x_key(r) > x_max else "")
        cv2.putText(img, label, (p[0] + 6 - (60 if x_key(r) > x_max else 0), p[1] - 6), font, 0.38,
                    (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 30), font, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(img, x_label, (left + 120, h - 25), font, 0.5, black, 1, cv2.LINE_AA)
    ylab = np.full((30, 260, 3), 255, np.uint8)
    cv2.putText(ylab, "pit recall (IoU > 0.33)", (5, 20), font, 0.5, black, 1, cv2.LINE_AA)
    img[top + 40: top + 300, 8:38] = cv2.rotate(ylab, cv2.ROTATE_90_COUNTERCLOCKWISE)
    cv2.putText(img, "red: sensitivity 1 (default); green: targets", (w - 370, h - 8), font, 0.4,
                (0, 0, 220), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def print_rows(rows: list[dict], clean_label: str) -> None:
    print(f"{'sens':>5} {'recall':>7} {'found':>7} {'flagged':>8} {'false/img t1':>13} {'t2':>6} "
          f"{clean_label:>14}")
    for r in rows:
        f = r["false_boxes_per_image"]
        clean = r["boxes_per_unannotated_image"]
        print(f"{r['sensitivity']:>5g} {r['recall']:>7.3f} {r['found']:>3}/{r['pits']:<3} "
              f"{r['images_flagged']:>8.3f} "
              f"{f.get('type1', float('nan')):>13.2f} {f.get('type2', float('nan')):>6.2f} "
              f"{clean if clean is not None else '-':>14}")


def run_sweep(data: Path, out: Path, overrides: list[str]) -> list[dict]:
    items = load_index(data)
    model = fit(texture_config(overrides), [i for i in items if i["split"] == "train"])
    rows = sweep_rows(model, scored(model, [i for i in items if i["split"] == "test"]),
                      scored(model, [i for i in items if i["split"] is None and not i["polygons"]]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    plot(out / "sweep.png", rows, lambda r: r["boxes_per_unannotated_image"],
         f"BSData test split: {rows[0]['pits']} pits, sensitivity {SENSITIVITIES[0]}-{SENSITIVITIES[-1]}",
         "boxes per unannotated image (24 images, not certified good)")
    print("== sweep, test split (false boxes: on the test images, touching no pit)")
    print_rows(rows, "boxes/unannot.")
    print(f"plot: {out / 'sweep.png'}")
    return rows


def run_cv(data: Path, out: Path, overrides: list[str], k: int) -> list[dict]:
    items = [i for i in load_index(data) if i["split"] == "train"]
    groups = sorted({position(i) for i in items})
    np.random.default_rng(0).shuffle(groups)
    fold_of = {g: n % k for n, g in enumerate(groups)}
    cfg = texture_config(overrides)
    per_fold = []
    for f in range(k):
        held = [i for i in items if fold_of[position(i)] == f]
        model = fit(cfg, [i for i in items if fold_of[position(i)] != f])
        per_fold.append(sweep_rows(model, scored(model, held), []))
    rows = []
    for j, sens in enumerate(SENSITIVITIES):
        rs = [p[j] for p in per_fold]
        found, pits = sum(r["found"] for r in rs), sum(r["pits"] for r in rs)
        n = {t: sum(1 for i in items if int(i["bsd_type"]) == t) for t in (1, 2)}
        false = {}
        for t in (1, 2):
            sizes = [sum(1 for i in items if int(i["bsd_type"]) == t and fold_of[position(i)] == f)
                     for f in range(k)]
            total = sum(r["false_boxes_per_image"].get(f"type{t}", 0) * s for r, s in zip(rs, sizes))
            false[f"type{t}"] = round(total / max(n[t], 1), 3)
        flagged = sum(r["images_flagged"] * len([i for i in items if fold_of[position(i)] == f])
                      for f, r in enumerate(rs))
        rows.append({"sensitivity": sens, "recall": round(found / max(pits, 1), 4), "pits": pits,
                     "found": found,
                     "images_flagged": round(flagged / len(items), 4), "false_boxes_per_image": false,
                     "boxes_per_unannotated_image": None})
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    plot(out / "cv.png", rows, lambda r: r["false_boxes_per_image"]["type2"],
         f"BSData train split, {k}-fold CV by position: {rows[0]['pits']} pits",
         "false boxes per type-2 image (touching no annotated pit)")
    print(f"== {k}-fold cross-validation on the train split ({len(items)} images)")
    print_rows(rows, "")
    print(f"plot: {out / 'cv.png'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--sweep", action="store_true", help="also sweep the sensitivity (sweep.png)")
    ap.add_argument("--cv", type=int, default=0, metavar="K", help="only K-fold CV on the train split")
    args = ap.parse_args(argv)
    args.data = args.data.resolve()  # the station run links the images: a relative path would dangle
    if not (args.data / "index.json").is_file():
        print(f"error: {args.data} holds no BSData subset (index.json)", file=sys.stderr)
        return 2
    from edge_inspector.logs import configure

    configure("warning", "console")
    sys.path.insert(0, str(REPO / "tools"))
    if args.cv:
        run_cv(args.data, args.out, args.overrides, args.cv)
        return 0
    paths = prepare(args.data, args.out)
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
          f"{sum(b > 0 for b in boxes)}/{len(boxes)} ({sum(boxes)} boxes, "
          f"{sum(boxes) / max(len(boxes), 1):.2f} per image)")
    if args.sweep:
        run_sweep(args.data, args.out, args.overrides)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
