"""A PLC lane: the link of one camera (or view set) of a multi-camera station.

One bridge drives one reject gate (its firmware has one gate output and one deadline queue), and
a Modbus slave has one result register block: so a lane is a link of its own, a bridge on its own
serial port or a Modbus RTU slave on its own port with its own ``unit_id``, given under the
camera's ``plc`` section. :class:`Lane` passes the link only its camera's parts (each part is armed
by its camera's part factory, so the link never hears of another camera's triggers); the link's
:class:`~edge_inspector.plc.PlcService` starts and closes it.
"""

from __future__ import annotations

from typing import Any

from edge_inspector.envelope import Inspection
from edge_inspector.outputs.base import Output


class Lane(Output):
    def __init__(self, link: Any, camera: str) -> None:
        self.link = link
        self.camera = camera
        self.name = f"{getattr(link, 'name', 'plc')}-{camera}"

    @property
    def fault(self) -> str | None:  # type: ignore[override]
        return getattr(self.link, "fault", None)

    def _mine(self, inspection: Inspection) -> bool:
        return inspection.frame.camera == self.camera

    def emit(self, inspection: Inspection) -> None:
        if self._mine(inspection):
            self.link.emit(inspection)

    def gate(self, inspection: Inspection) -> Inspection | None:
        return self.link.gate(inspection) if self._mine(inspection) else None

    def late_gates(self):
        return self.link.late_gates()  # the link holds only its camera's parts

    def health(self) -> dict[str, Any]:
        return {**self.link.health(), "name": self.name, "camera": self.camera}
