"""Topic names and message payloads (no paho here)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from edge_inspector.envelope import Inspection
from edge_inspector.versions import Versions

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class Topics:
    """``<prefix>/<station>/...``: available, result, state, stats, reject_image, set/<name>, reply.

    A multi-camera station (``per_camera``) publishes each part's result and reject image under its
    camera (or view set), as Frigate does: ``<prefix>/<station>/<camera>/result``; availability,
    state, stats, commands and replies stay the station's."""

    base: str
    per_camera: bool = False

    @classmethod
    def of(cls, prefix: str, station: str, per_camera: bool = False) -> Topics:
        return cls(f"{prefix}/{station}", per_camera)

    def result_for(self, camera: str) -> str:
        return f"{self.base}/{camera}/result" if self.per_camera else self.result

    def reject_image_for(self, camera: str) -> str:
        return f"{self.base}/{camera}/reject_image" if self.per_camera else self.reject_image

    @property
    def available(self) -> str:
        return f"{self.base}/available"

    @property
    def result(self) -> str:
        return f"{self.base}/result"

    @property
    def gate(self) -> str:
        """A late gate answer: the part's result went out ``unconfirmed``, this says what the gate did."""
        return f"{self.base}/gate"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def reject_image(self) -> str:
        return f"{self.base}/reject_image"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def set_filter(self) -> str:
        return f"{self.base}/set/+"

    def command_name(self, topic: str) -> str | None:
        """The <name> of ``<base>/set/<name>``, else None."""
        head = f"{self.base}/set/"
        return topic[len(head):] if topic.startswith(head) else None


def decided_wall(inspection: Inspection, now_mono: float | None = None) -> float:
    """The wall-clock time of the decision (the envelope carries monotonic time)."""
    now_mono = time.monotonic() if now_mono is None else now_mono
    return time.time() - (now_mono - inspection.decision.decided_mono)


def result_payload(inspection: Inspection, versions: Versions, decided: float) -> bytes:
    """One JSON message per part: the envelope's result shape plus the versions and times."""
    body: dict[str, Any] = {"v": PAYLOAD_VERSION, "station": versions.station,
                            **inspection.to_json(), "decided_time": round(decided, 6),
                            "model": versions.model, "model_version": versions.model_version,
                            "config": versions.config,
                            "recipe": versions.recipe, "recipe_version": versions.recipe_version}
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False, default=str).encode()
    except ValueError:  # NaN or infinity somewhere: JSON has no such numbers, they become null
        return json.dumps(_finite(body), separators=(",", ":"), default=str).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
