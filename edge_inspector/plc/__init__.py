"""plc: the link to the line's PLC. The firmware bridge (``bridge``: ARM at the trigger, DECIDE with
the decision, the bridge's own fail-safe) or Modbus RTU (``modbus_rtu``: the PLC polls registers).

Either link is the station's first output, a trigger producer (it fires the daemon's TriggerBus)
and is told of each part as it is made (``arm``); :class:`PlcService` owns it: starts it beside the
loop and closes it once, after the last decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_inspector.lifecycle import Service

if TYPE_CHECKING:
    from edge_inspector.capture.triggers import TriggerBus
    from edge_inspector.config import Config

__all__ = ["PlcService", "build_plc"]


def build_plc(cfg: Config, triggers: TriggerBus | None) -> Any:
    """The PLC link for ``cfg.plc`` (None for ``kind: none``). Opens nothing until started."""
    plc = cfg.plc
    stall_s = (cfg.policy.deadline_ms + cfg.pipeline.judge_grace_ms + 1000) / 1000
    if plc.kind == "bridge":
        from edge_inspector.plc.bridge import BridgeLink

        return BridgeLink(plc, triggers=triggers, stall_timeout_s=stall_s)
    if plc.kind == "modbus_rtu":
        from edge_inspector.plc.modbus import ModbusLink

        return ModbusLink(plc, triggers=triggers, stall_timeout_s=stall_s)
    return None


class PlcService(Service):
    """Owns the PLC link for the station's lifetime: starts its I/O with the station's progress
    clock (heartbeats follow the inspection loop) and closes it, once, after the worker has emitted
    the last decision. The link is also an output; the outputs' dispatcher leaves closing it here."""

    name = "plc"

    def __init__(self, link: Any, progress: Callable[[], float],
                 recording_fault: Callable[[], str | None] | None = None) -> None:
        super().__init__()
        self.link = link
        self.progress = progress
        self.recording_fault = recording_fault

    def setup(self) -> None:
        if self.recording_fault is not None and hasattr(self.link, "recording_fault"):
            self.link.start(progress=self.progress, recording_fault=self.recording_fault)
        else:  # Modbus: ERROR_CODE has no code for it yet
            self.link.start(progress=self.progress)

    def teardown(self) -> None:
        self.link.close()
