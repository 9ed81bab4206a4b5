#!/usr/bin/env python3
"""Benchmark the station on the embedded demo: parts/s and the median and p99 of each stage.

    python tools/bench_pipeline.py [--parts 100] [--size 640]

Two runs in one process, side by side: without the HTTP API, and with it (a live-feed client
reading and /metrics scraped every 0.5 s); "api feed + metrics output" is what the API adds to the
worker per part.

Runs the real daemon (capture thread, queue, worker, SQLite store, reject images) on the demo
source in a temporary data directory. "overhead" is the daemon's own time per part: everything but
the regions model and the judge (queue hand-off, policy, store row, reject image, bookkeeping).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from edge_inspector.capture.demo import prepare_product
from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.logs import configure


def pct(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def run_once(args, root: Path, api: bool) -> dict[str, list[float]]:
    """One run of the daemon; with ``api``: the HTTP API on, a live-feed client reading and
    /metrics scraped every 0.5 s while the parts flow."""
    data = root / ("data-api" if api else "data")
    cfg = load_config(None, [f"station.data_dir={data}", "capture.kind=demo", f"capture.width={args.size}",
                             f"capture.height={args.size}", f"regions.reference={root / 'ref.png'}",
                             f"regions.good_images={root / 'good'}", "policy.deadline_ms=60000",
                             f"api.enabled={str(api).lower()}", "api.port=0"])
    station = Station.build(cfg)
    per_part: list[dict[str, float]] = []
    emit = station.outputs.emit
    feed = station.outputs.outputs[-1] if api else None
    feed_ms: list[float] = []
    if feed is not None:
        feed_emit = feed.emit

        def timed_feed(inspection):
            t = time.perf_counter()
            feed_emit(inspection)
            feed_ms.append((time.perf_counter() - t) * 1000)

        feed.emit = timed_feed

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
    clients = []
    if api:
        def http_clients():
            station.ready.wait()
            url = station.services.get("api").url
            stream = urllib.request.urlopen(url + "/api/v1/feed", timeout=60)  # noqa: S310 - loopback
            clients.append(threading.Thread(target=lambda: [None for _ in stream], daemon=True))
            clients[-1].start()
            while not station.stop.is_set():
                urllib.request.urlopen(url + "/metrics", timeout=10).read()  # noqa: S310
                station.stop.wait(0.5)

        threading.Thread(target=http_clients, daemon=True).start()
    station.run(max_parts=args.parts, install_signals=False)
    stages = ["regions", "judge", "policy", "outputs"]
    rows = {s: [p[s] for p in per_part if s in p] for s in stages}
    rows["worker (per part)"] = worker_ms
    rows["overhead (worker - regions - judge)"] = [
        w - p.get("regions", 0) - p.get("judge", 0) for w, p in zip(worker_ms, per_part, strict=True)]
    if api:
        rows["api feed + metrics output"] = feed_ms
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=100)
    ap.add_argument("--size", type=int, default=640)
    args = ap.parse_args()
    configure("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare_product(load_config(None, ["capture.kind=demo", f"capture.width={args.size}",
                                           f"capture.height={args.size}"]).capture,
                        root / "ref.png", root / "good", good=4)
        t0 = time.perf_counter()
        off = run_once(args, root, api=False)
        wall = time.perf_counter() - t0
        on = run_once(args, root, api=True)
    print(f"edge-inspector pipeline benchmark: {args.parts} demo parts at {args.size}x{args.size}, "
          f"{args.parts / wall:.1f} parts/s ({wall:.2f} s wall, API off)")
    print(f"{'stage':<38} {'median ms':>10} {'p99 ms':>10} {'API on: median':>15} {'p99':>8}")
    for name in {**off, **on}:
        a, b = off.get(name, []), on.get(name, [])
        left = f"{statistics.median(a):>10.3f} {pct(a, 99):>10.3f}" if a else f"{'-':>10} {'-':>10}"
        print(f"{name:<38} {left} {statistics.median(b):>15.3f} {pct(b, 99):>8.3f}")
    key = "overhead (worker - regions - judge)"
    print(f"API + metrics (a feed client reading, /metrics scraped every 0.5 s): the feed output costs "
          f"{statistics.median(on['api feed + metrics output']):.3f} ms median on the worker; the "
          f"daemon's overhead moves {statistics.median(on[key]) - statistics.median(off[key]):+.3f} ms median")


if __name__ == "__main__":
    main()
