"""plc: the link to the line's PLC. The firmware bridge (``bridge``: ARM at the trigger, DECIDE with
the decision, the bridge's own fail-safe) or Modbus RTU (``modbus_rtu``: the PLC polls registers).

Either link is the station's first output, a trigger producer (it fires the daemon's TriggerBus)
and is told of each part as it is made (``arm``); :class:`PlcService` runs it beside the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


class PlcService:
    """Runs the PLC link for the station's lifetime (a ``daemon.Service``): started with the
    station's progress clock, so heartbeats follow the inspection loop."""

    name = "plc"

    def __init__(self, link: Any) -> None:
        self.link = link

    def start(self, station: Any) -> None:
        self.link.start(progress=lambda: station.last_progress_mono)

    def stop(self) -> None:
        self.link.close()
