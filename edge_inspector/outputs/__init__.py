"""outputs: where a decided inspection goes. The PLC link first (it has the deadline), then the rest."""

from __future__ import annotations

from typing import Any

import structlog

from edge_inspector.envelope import Inspection
from edge_inspector.outputs.base import Output

log = structlog.get_logger(__name__)

__all__ = ["Output", "Outputs"]


class Outputs:
    """Emits each inspection to every output in order, isolating each one's failure. After a gate
    (the PLC link), the outputs that follow receive the inspection as the gate applied it: what the
    gate did is what is recorded."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs
        self.failures: dict[str, int] = {o.name: 0 for o in outputs}

    def emit(self, inspection: Inspection) -> None:
        for out in self.outputs:
            try:
                out.emit(inspection)
            except Exception as exc:  # noqa: BLE001 - one failing output must not silence the others
                self.failures[out.name] += 1
                log.error("output_failed", output=out.name, part_id=inspection.frame.part_id,
                          error=f"{type(exc).__name__}: {exc}")
            try:
                gate = getattr(out, "gate", None)
                inspection = (gate(inspection) if gate else None) or inspection
            except Exception as exc:  # noqa: BLE001
                log.error("output_gate_failed", output=out.name, part_id=inspection.frame.part_id,
                          error=f"{type(exc).__name__}: {exc}")

    def health(self) -> list[dict[str, Any]]:
        return [{**o.health(), "failures": self.failures[o.name]} for o in self.outputs]

    def close(self) -> None:
        for out in reversed(self.outputs):
            try:
                out.close()
            except Exception as exc:  # noqa: BLE001
                log.error("output_close_failed", output=out.name, error=str(exc))
