"""The retained state message and the periodic stats message, built from the station's snapshot."""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any

from edge_inspector.versions import Versions

PLC_OUTPUTS = ("plc", "bridge", "modbus", "modbus_rtu")


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 3)

    return {"p50": at(0.50), "p99": at(0.99), "n": len(s)}


def drain(values: deque[float]) -> list[float]:
    """Take everything out of a deque another thread appends to."""
    out = []
    while True:
        try:
            out.append(values.popleft())
        except IndexError:
            return out


def state_of(station: Any, versions: Versions) -> dict[str, Any]:
    """running / paused, recipe, model, the camera and the PLC link. No timestamp: the publisher
    sends it again only when it changed."""
    snap = station.snapshot()
    paused = station.paused.is_set()
    paused_reason = station.paused_reason
    plc = next((o for o in snap.get("outputs", []) if o.get("name") in PLC_OUTPUTS), None)
    fault = getattr(station, "recording_fault", None)
    return {"state": "not_recording" if fault else "paused" if paused else "running",
            "paused_reason": (paused_reason or None) if paused else None, "fault": fault,
            "station": versions.station, "recipe": versions.recipe, "recipe_version": versions.recipe_version,
            "model": versions.model, "model_version": versions.model_version, "config": versions.config,
            "camera": snap.get("source"), "plc": plc or {"name": "none", "state": "none"},
            **({"cameras": {c["name"]: c["source"] for c in snap.get("cameras", [])}}
               if getattr(getattr(station, "cfg", None), "multi_camera", False) else {})}


def stats_of(station: Any, part_ms: list[float], ack_ms: list[float], outbox: dict[str, Any],
             data_dir: Path, interval_s: float) -> dict[str, Any]:
    snap = station.snapshot()
    c = snap["counters"]
    try:
        free_mb: float | None = round(shutil.disk_usage(data_dir).free / 1048576, 1)
    except OSError:
        free_mb = None
    return {"time": round(time.time(), 3), "interval_s": interval_s, "paused": station.paused.is_set(),
            "parts": c.get("decisions", 0), "triggers": c.get("triggers", 0), "passes": c.get("PASS", 0),
            "rejects": c.get("REJECT", 0), "no_reads": c.get("NO-READ", 0), "overflow": c.get("overflow", 0),
            "latency_ms": percentiles(part_ms), "queue_depth": snap.get("queue_depth", 0),
            "free_disk_mb": free_mb, "outbox": outbox, "puback_ms": percentiles(ack_ms)}


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()
