#!/usr/bin/env python3
"""The variation model's quality floor on synthetic boards of designs the tests do not use.

    python tools/eval_synthetic.py [--designs 10] [--boards 20] [--binarized] [--set key=value ...]

Per design: a one-shot model from one captured good board, then boards that alternate good (with
capture jitter) and defective (1 to 3 defects). Prints defective boards missed, good boards
rejected, box recall and precision at IoU > 0.33, and the misses by defect kind. ``--binarized``
captures every board binarised, as in scanned AOI data sets; ``--set`` overrides regions settings
(e.g. ``--set abs_tolerance=0.2``).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import yaml

from edge_inspector.regions.boxes import iou
from edge_inspector.regions.variation import VariationConfig, VariationModel
from edge_inspector.synth.pcb import BoardDesign, Capture, make_board



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=10)
    ap.add_argument("--boards", type=int, default=20)
    ap.add_argument("--first-design", type=int, default=900)
    ap.add_argument("--binarized", action="store_true")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    settings = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    cfg = VariationConfig(**settings)
    cap = Capture(binarize_probability=1.0) if args.binarized else Capture()
    missed = rejected = hits = truths = matched = boxes = 0
    n_good = n_bad = 0
    misses: collections.Counter[str] = collections.Counter()
    ms, good_scores = [], []
    for ds in range(args.first_design, args.first_design + args.designs):
        design = BoardDesign(ds)
        model = VariationModel(cfg, [make_board(design, 0, jitter=cap).image])
        for s in range(1, args.boards + 1):
            board = make_board(design, s, defects=0 if s % 2 else 1 + s % 3, jitter=cap)
            t = time.perf_counter()
            r = model.find(board.image)
            ms.append((time.perf_counter() - t) * 1000)
            if not board.defective:
                n_good += 1
                rejected += bool(r.boxes)
                good_scores.append(r.score)
                continue
            n_bad += 1
            missed += not r.boxes
            boxes += len(r.boxes)
            matched += sum(any(iou(d.box, b.as_list()) > 0.33 for d in board.defects) for b in r.boxes)
            for d in board.defects:
                truths += 1
                ok = any(iou(d.box, b.as_list()) > 0.33 for b in r.boxes)
                hits += ok
                misses[d.kind] += not ok
    print(f"designs {args.first_design}..{args.first_design + args.designs - 1}, "
          f"{'binarized' if args.binarized else 'mixed'} capture")
    print(f"defective boards missed  {missed}/{n_bad}")
    print(f"good boards rejected     {rejected}/{n_good}   (highest good score {max(good_scores):.2f}, "
          f"threshold {cfg.boxes.threshold})")
    print(f"box recall @IoU>0.33     {hits / truths:.3f} ({hits}/{truths})")
    print(f"box precision            {matched / max(boxes, 1):.3f} ({matched}/{boxes})")
    print(f"misses by kind           {dict(+misses) or '-'}")
    print(f"regions ms per frame     median {statistics.median(ms):.1f}")


if __name__ == "__main__":
    main()
