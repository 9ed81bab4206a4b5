#!/usr/bin/env python3
"""Decision -> PLC pin latency through the bridge driver and the real firmware in simavr.

    make -C firmware_bridge all sim
    .venv/bin/python tools/bench_plc.py [--parts 1000] [--baud 115200]

Per part: ARM (answered before the decision, as in the daemon), then ``BridgeLink.emit`` with a
REJECT decision; the latency is from the ``emit`` call to the REJECT pin's rising edge as the
harness reports it (wall clock: the simulation is paced to it and leads it by at most 1 ms; the
edge line's pipe and our reader thread are included, so this is an upper bound). Beside it, the
time the DECIDE frame itself takes on the wire at the configured baud rate (10 bits per byte).
Target (design brief): at most 2 ms at 115200 baud.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.capture.base import PartFactory  # noqa: E402
from edge_inspector.envelope import Action, Decision, Inspection, Outcome, Reason  # noqa: E402
from edge_inspector.logs import configure as configure_logging  # noqa: E402
from edge_inspector.plc import protocol as p  # noqa: E402
from edge_inspector.plc import sim as simmod  # noqa: E402
from edge_inspector.plc.bridge import BridgeLink  # noqa: E402
from edge_inspector.plc.config import BridgeConfig  # noqa: E402

TARGET_MS = 2.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.0002)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", type=int, default=1000)
    ap.add_argument("--baud", type=int, default=115200, help="the link's baud rate (the firmware "
                    "is built for 115200; other rates only change the wire-time column)")
    args = ap.parse_args()
    configure_logging("warning", "console")
    reason = simmod.unavailable()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    sim = simmod.BridgeSim()
    sim.wait("PIN", "FAULT", "1")
    link = BridgeLink(BridgeConfig(port=sim.pty, baud=args.baud, boot_wait_ms=0, reject_pulse_ms=2),
                      stall_timeout_s=60)
    link.start()
    pin_ms: list[float] = []
    applied_ms: list[float] = []
    missing = 0
    try:
        if not wait_for(lambda: link.state == "ready", 5):
            print(f"bridge not ready: {link.health()}", file=sys.stderr)
            return 1
        parts = PartFactory(1.0)
        for _ in range(args.parts):
            trig = parts.trigger("bench")
            link.arm(trig)
            wait_for(lambda t=trig: link.part(t.part_id).arm == "armed", 1)
            time.sleep(0.004)  # the previous pulse and its gap are over
            mark = sim.mark()
            decision = Decision(trig.part_id, Outcome.REJECT, Action.REJECT, Reason.DEFECT, "", {},
                                time.monotonic(), False)
            t0 = time.monotonic()
            link.emit(Inspection(trig.frame(None, error="bench"), decision))
            try:
                _, edge = sim.wait("PIN", "REJECT", "1", start=mark, timeout=1)
            except TimeoutError:
                missing += 1
                continue
            pin_ms.append((edge.wall - t0) * 1000)
            if wait_for(lambda t=trig: link.part_result(t.part_id) is not None, 1):
                applied_ms.append(link.decide_to_applied_ms or 0.0)
        health = link.health()
    finally:
        link.close()
        sim.stop()
    frame = p.encode_frame(0, p.Decide(0x12345678, p.Verdict.REJECT))
    wire_ms = len(frame) * 10 / args.baud * 1000
    print(f"bridge latency over {len(pin_ms)} parts ({missing} without an edge), "
          f"baud {args.baud}, firmware in simavr")
    print(f"{'':44}{'p50':>8}{'p99':>8}{'max':>8}")
    rows = [("emit() -> REJECT pin edge [ms]", pin_ms),
            ("DECIDE written -> APPLIED back [ms]", applied_ms)]
    for name, values in rows:
        if values:
            print(f"{name:44}{statistics.median(values):8.3f}{pct(values, 99):8.3f}{max(values):8.3f}")
    print(f"{f'DECIDE frame on the wire ({len(frame)} bytes) [ms]':44}{wire_ms:8.3f}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"retransmissions {health.get('link_retransmissions', 0)}, bad frames "
          f"{health['rx_bad_frames']}, target p99 <= {TARGET_MS} ms: "
          f"{'met' if pin_ms and pct(pin_ms, 99) <= TARGET_MS else 'NOT met'}")
    return 0 if pin_ms and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
