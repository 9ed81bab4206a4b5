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
    gate did is what is recorded.

    ``owned``: the outputs this dispatcher closes (all of them by default). An output with an owner
    of its own (the PLC link: its service starts it and closes it) is left out, so each is closed
    exactly once."""

    def __init__(self, outputs: list[Output], owned: list[Output] | None = None) -> None:
        self.outputs = outputs
        self.owned = list(outputs if owned is None else owned)
        self.failures: dict[str, int] = {o.name: 0 for o in outputs}
        self._closed = False

    def emit(self, inspection: Inspection) -> None:
        self.correct_late_gates()
        for out in self.outputs:
            try:
                out.emit(inspection)
            except Exception as exc:  # noqa: BLE001 - one failing output must not silence the others
                self.failures[out.name] += 1
                log.error("output_failed", output=out.name, part_id=inspection.frame.part_id,
                          error=f"{type(exc).__name__}: {exc}")
            try:
                inspection = out.gate(inspection) or inspection  # Output.gate: None unless a gate
            except Exception as exc:  # noqa: BLE001
                log.error("output_gate_failed", output=out.name, part_id=inspection.frame.part_id,
                          error=f"{type(exc).__name__}: {exc}")

    def correct_late_gates(self) -> None:
        """Hands each gate answer that came after its part was recorded ``unconfirmed`` to the
        outputs that keep records (before each part, and at close): what the gate did is what is
        recorded, if late."""
        for gate in self.outputs:
            try:
                late = gate.late_gates()
            except Exception as exc:  # noqa: BLE001
                log.error("output_gate_failed", output=gate.name, error=f"{type(exc).__name__}: {exc}")
                continue
            for part_id, action, how in late:
                for out in self.outputs:
                    if out is gate:
                        continue
                    try:
                        out.regate(part_id, action, how)
                    except Exception as exc:  # noqa: BLE001
                        self.failures[out.name] += 1
                        log.error("output_failed", output=out.name, part_id=part_id,
                                  error=f"{type(exc).__name__}: {exc}")

    def fault(self) -> str | None:
        """Why an output cannot record now (its last write failed), or None."""
        for out in self.outputs:
            if out.fault:
                return f"{out.name}: {out.fault}"
        return None

    def health(self) -> list[dict[str, Any]]:
        return [{**o.health(), "failures": self.failures[o.name]} for o in self.outputs]

    def close(self) -> None:
        """Close the owned outputs, the last first. Once; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self.correct_late_gates()  # the last parts' late answers, before the store closes
        for out in reversed(self.owned):
            try:
                out.close()
            except Exception as exc:  # noqa: BLE001
                log.error("output_close_failed", output=out.name, error=str(exc))
