"""Capture benchmark: frames/s and latency through pylon's camera emulator at its default size.

    PYLON_CAMEMU=1 .venv/bin/python tools/bench_capture.py [--frames 300] [--json]

Each row runs a source the way the daemon does (``frames()`` in a capture thread that puts every
frame into a queue) and measures, per frame:

- trigger -> queue: from the trigger (the event's ``t_mono``) to the frame being in the queue;
- grab -> queue: from the moment pylon handed over the grab result to the frame being in the queue
  (pixel copy or conversion, the frame envelope, the queue put): the source's own overhead.

Rows: software trigger back to back (the next trigger once the frame is queued), software trigger
from a 50 Hz timer, free-run as fast as the emulator goes, and a colour pixel format that goes
through pylon's converter (BayerRG8 -> BGR). The emulator's image is 1024 x 1040.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.capture.base import PartFactory, Source  # noqa: E402
from edge_inspector.capture.basler import BaslerSourceConfig, build  # noqa: E402
from edge_inspector.capture.triggers import TimerTrigger  # noqa: E402


WARMUP = 20  # frames per row not measured (first grabs, allocations)


def run(source: Source, n: int, drive: Callable[[Source, queue.Queue, int], list]) -> dict[str, Any]:
    q: queue.Queue = queue.Queue()
    stop = threading.Event()

    def capture() -> None:  # the daemon's capture worker
        for frame in source.frames(PartFactory(deadline_s=2.0, run_tag="bench"), stop):
            q.put((frame, time.monotonic()))

    worker = threading.Thread(target=capture, daemon=True)
    worker.start()
    got = drive(source, q, n + WARMUP)[WARMUP:]  # the inspection side: blocks on the queue
    elapsed = got[-1]["queued"] - got[0]["queued"]
    stop.set()
    worker.join(30)
    good = [g for g in got if g["readable"]]
    trig = sorted((g["queued"] - g["trigger"]) * 1e3 for g in good)
    grab = sorted((g["queued"] - g["grab"]) * 1e3 for g in good)

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    return {"frames": len(got), "no_reads": len(got) - len(good),
            "fps": round((len(got) - 1) / elapsed, 1),
            "trigger_to_queue_ms_p50": round(statistics.median(trig), 2),
            "trigger_to_queue_ms_p95": round(pct(trig, 0.95), 2),
            "grab_to_queue_ms_p50": round(statistics.median(grab), 3),
            "grab_to_queue_ms_p95": round(pct(grab, 0.95), 3),
            "grab_to_queue_ms_max": round(grab[-1], 3),
            "shape": good[0]["shape"] if good else ""}


def take(q: queue.Queue) -> dict[str, Any]:
    """The next frame's times; the image is let go at once, as the inspection side would."""
    frame, queued = q.get(timeout=10)
    return {"trigger": frame.trigger_mono, "grab": frame.meta.get("grab_mono"), "queued": queued,
            "readable": frame.readable,
            "shape": "x".join(map(str, frame.image.shape)) if frame.readable else ""}


def back_to_back(source: Source, q: queue.Queue, n: int) -> list:
    got = []
    for _ in range(n):
        source.triggers.fire("command")  # type: ignore[attr-defined]
        got.append(take(q))
    return got


def timer_50hz(source: Source, q: queue.Queue, n: int) -> list:
    timer = TimerTrigger(source.triggers, rate_hz=50, count=n).start()  # type: ignore[attr-defined]
    got = [take(q) for _ in range(n)]
    timer.stop()
    return got


def free_run(source: Source, q: queue.Queue, n: int) -> list:
    return [take(q) for _ in range(n)]


ROWS = [
    ("software trigger, back to back", {}, back_to_back),
    ("software trigger, 50 Hz timer", {}, timer_50hz),
    ("free-run, camera max", {"trigger": "free_run"}, free_run),
    ("software, BayerRG8 -> BGR", {"pixel_format": "BayerRG8"}, back_to_back),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per row")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    os.environ.setdefault("PYLON_CAMEMU", "1")
    results = []
    for label, overrides, drive in ROWS:
        source = build(BaslerSourceConfig(**overrides))
        source.open()
        try:
            results.append({"row": label, **run(source, args.frames, drive)})
        finally:
            source.close()
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return 0
    head = ("| mode | image | frames | NO-READ | frames/s | trigger->queue p50 / p95 ms "
            "| grab->queue p50 / p95 / max ms |")
    lines = [head, "|" + "---|" * 7]
    lines += [f"| {r['row']} | {r['shape']} | {r['frames']} | {r['no_reads']} | {r['fps']} | "
              f"{r['trigger_to_queue_ms_p50']} / {r['trigger_to_queue_ms_p95']} | "
              f"{r['grab_to_queue_ms_p50']} / {r['grab_to_queue_ms_p95']} / "
              f"{r['grab_to_queue_ms_max']} |" for r in results]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
