#!/usr/bin/env python3
"""Benchmark a multi-camera station on the embedded demo: how many parts share a judge call.

    python tools/bench_cameras.py [--parts 40] [--interval-ms 150]

Two live demo cameras (each its own board design, regions model and clock: ``interval_ms`` between
its triggers, nothing paced, the drop-oldest strategy of a live camera) into one daemon with one
judge, in a temporary data directory. The worker hands the judge the oldest waiting part of each
camera in one call (``Judge.judge_many``): "parts per judge call" is that batching, from 1.0 (the
cameras never wait together: the station keeps up with both) to 2.0 (every call takes a part of
each camera). A ratio, not a speed: it depends on how busy the station is, not on the machine alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edge_inspector.capture.base import BufferStrategy
from edge_inspector.capture.demo import DemoSourceConfig, prepare_product
from edge_inspector.config import load_config
from edge_inspector.daemon import Station
from edge_inspector.logs import configure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=40)
    ap.add_argument("--interval-ms", type=float, default=150.0, help="each camera's time between triggers")
    args = ap.parse_args()
    configure("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cams = []
        for name, design in (("top", 7), ("bottom", 11)):
            demo = DemoSourceConfig(design_seed=design, interval_ms=args.interval_ms, buffer=BufferStrategy.DROP_OLDEST)
            prepare_product(demo, root / name / "ref.png", root / name / "good")
            cams.append(f"{{name: {name}, capture: {{kind: demo, design_seed: {design}, interval_ms: "
                        f"{args.interval_ms:g}, buffer: drop_oldest}}, regions: {{kind: variation, "
                        f"reference: {root / name / 'ref.png'}, good_images: {root / name / 'good'}}}}}")
        cfg = load_config(None, [f"station.data_dir={root / 'data'}", f"cameras=[{', '.join(cams)}]",
                                 "policy.deadline_ms=60000", "pipeline.queue_size=64"])
        station = Station.build(cfg)
        t0 = time.monotonic()
        station.run(max_parts=args.parts, install_signals=False)
        wall = time.monotonic() - t0
        c, calls = station.counters, station.stages.judge.calls
        per_camera = {u.name: u.decided for u in station.units}
    print(f"cameras 2, interval {args.interval_ms:g} ms each: {c.decisions} parts {per_camera} in {wall:.1f} s "
          f"({c.decisions / wall:.1f} parts/s), {calls} judge calls, {c.decisions / max(1, calls):.2f} parts "
          f"per judge call, overflow {c.overflow}, NO-READ {c.outcomes['NO-READ']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
