"""The outputs interface: where a decided inspection goes (PLC link, store, images, MQTT)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from edge_inspector.envelope import Action, Inspection


class Output(ABC):
    """A sink for decided inspections. ``emit`` may raise: the dispatcher isolates each output, logs
    the failure and goes on with the others, so one failing output never silences another."""

    name: str = "output"
    fault: str | None = None  # why this output cannot record now (the station says so, fail-safe)

    @abstractmethod
    def emit(self, inspection: Inspection) -> None: ...

    def gate(self, inspection: Inspection) -> Inspection | None:
        """A PLC link that knows what its reject gate did returns the inspection as the gate applied
        it (the decision's ``action`` and ``gate``); the outputs after it record that. None: this
        output is not a gate. Called after ``emit``, also when ``emit`` raised."""
        return None

    def late_gates(self) -> list[tuple[str, Action, str]]:
        """A gate whose answer came after the part was recorded ``unconfirmed``: what it did then,
        as (part id, action, gate), each once. Empty for an output that is not a gate."""
        return []

    def regate(self, part_id: str, action: Action, gate: str) -> None:  # noqa: B027 - optional hook
        """An output that keeps records corrects the part's ``unconfirmed`` record to what the gate
        did (the store); the others ignore it."""

    def health(self) -> dict[str, Any]:
        return {"name": self.name, "state": "ok"}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release. Must be safe to call twice."""
