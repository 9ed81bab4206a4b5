#!/usr/bin/env python3
"""Benchmark the station on the embedded demo: parts/s and the median and p99 of each stage.

    python tools/bench_pipeline.py [--parts 100] [--size 640]

Runs the real daemon (capture thread, queue, worker, SQLite store, reject images) on the demo
source in a temporary data directory. "overhead" is the daemon's own time per part: everything but
the regions model and the judge (queue hand-off, policy, store row, reject image, bookkeeping).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_inspector.capture.demo import prepare_product
from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.logs import configure


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=100)
    ap.add_argument("--size", type=int, default=640)
    args = ap.parse_args()
    configure("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = load_config(None, [f"station.data_dir={root / 'data'}", "capture.kind=demo", f"capture.width={args.size}",
                                 f"capture.height={args.size}", f"regions.reference={root / 'ref.png'}",
                                 f"regions.good_images={root / 'good'}", "policy.deadline_ms=60000"])
        prepare_product(cfg.capture, root / "ref.png", root / "good", good=4)
        station = Station.build(cfg)
        per_part: list[dict[str, float]] = []
        emit = station.outputs.emit

        def timed_emit(inspection):
            t = time.perf_counter()
            emit(inspection)
            inspection.decision.timings_ms["outputs"] = (time.perf_counter() - t) * 1000
            per_part.append(inspection.decision.timings_ms)

        station.outputs.emit = timed_emit
        handle = station._handle
        worker_ms: list[float] = []

        def timed_handle(frame):
            t = time.perf_counter()
            handle(frame)
            worker_ms.append((time.perf_counter() - t) * 1000)

        station._handle = timed_handle
        t0 = time.perf_counter()
        station.run(max_parts=args.parts, install_signals=False)
        wall = time.perf_counter() - t0
    stages = ["regions", "judge", "policy", "outputs"]
    rows = {s: [p[s] for p in per_part if s in p] for s in stages}
    rows["worker (per part)"] = worker_ms
    rows["overhead (worker - regions - judge)"] = [
        w - p.get("regions", 0) - p.get("judge", 0) for w, p in zip(worker_ms, per_part, strict=True)]
    print(f"edge-inspector pipeline benchmark: {args.parts} demo parts at {args.size}x{args.size}, "
          f"{args.parts / wall:.1f} parts/s ({wall:.2f} s wall)")
    print(f"{'stage':<38} {'median ms':>10} {'p99 ms':>10}")
    for name, v in rows.items():
        print(f"{name:<38} {statistics.median(v):>10.3f} {pct(v, 99):>10.3f}")


if __name__ == "__main__":
    main()
