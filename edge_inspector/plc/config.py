"""The ``plc`` config section: which PLC link the station drives (``bridge``, ``modbus_rtu`` or
``none``), as a discriminated union on ``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge_inspector.config_base import ConfigModel
from edge_inspector.envelope import Action


class NoPlcConfig(ConfigModel):
    """No PLC link: decisions go to the store (and MQTT) only."""

    kind: Literal["none"] = Field("none", description="PLC link type.")


class BridgeConfig(ConfigModel):
    """The firmware bridge (firmware_bridge/) on a USB serial port: see docs/plc.md."""

    kind: Literal["bridge"] = Field("bridge", description="PLC link type.")
    port: str = Field(..., min_length=1, description="The serial port, best a stable udev name "
                      "such as /dev/serial/by-id/usb-... (it survives re-plugging).")
    baud: int = Field(115200, gt=0, description="Serial speed; the firmware is built for 115200.")
    reject_pulse_ms: int = Field(100, ge=1, le=10000, description="Width of the REJECT pulse; "
                                 "pulses are separated by a gap as long as a pulse.")
    heartbeat_timeout_ms: int = Field(1000, ge=50, le=60000, description="The bridge raises FAULT "
                                      "and drops READY when it hears nothing from the station for "
                                      "this long; the station sends a frame every third of it.")
    failsafe_on_deadline: Action = Field(Action.REJECT, description="What the bridge does on its "
                                         "own with a part not decided by its deadline.")
    failsafe_on_heartbeat: Action = Field(Action.REJECT, description="What the bridge does with the "
                                          "parts pending when the heartbeat is lost.")
    arm_margin_ms: float = Field(5.0, ge=0, le=1000, description="The bridge's deadline for a part "
                                 "is set this much before the station's, to cover the ARM frame's "
                                 "transfer, so the fail-safe never comes later than the deadline.")
    ack_timeout_ms: float = Field(100.0, gt=0, le=5000, description="A frame not answered in this "
                                  "time is sent again, byte for byte.")
    gate_wait_ms: float | None = Field(None, gt=0, le=60000, description="How long the station "
                                       "waits for the gate's answer to a decision (APPLIED or a "
                                       "fail-safe) before it records the part as 'unconfirmed'. "
                                       "Null: two ack timeouts and 50 ms (one resend).")
    max_transmissions: int = Field(5, ge=1, le=50, description="Transmissions of one frame before "
                                   "it is given up (counted in tx_lost).")
    boot_wait_ms: float = Field(2000.0, ge=0, le=10000, description="After opening the port, wait "
                                "up to this long for the bridge's boot message before the handshake "
                                "(an Uno/Nano resets when its port opens). 0 for a board that does "
                                "not reset on open, or the simulation.")
    reconnect_backoff_s: float = Field(0.5, gt=0, description="First wait before reopening a lost "
                                       "port; doubles after each failed attempt.")
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between reopen attempts.")
    status_interval_s: float = Field(1.0, gt=0, description="How often the bridge's STATUS is "
                                     "polled (counters, FAULT) for the station's health.")
    stall_timeout_ms: float | None = Field(None, gt=0, description="Heartbeats stop, so that the "
                                           "bridge raises FAULT, when the inspection loop has had "
                                           "a part waiting and made no progress for this long. "
                                           "Null: policy.deadline_ms + pipeline.judge_grace_ms + "
                                           "1000.")

    @model_validator(mode="after")
    def _check(self) -> BridgeConfig:
        if self.ack_timeout_ms >= self.heartbeat_timeout_ms / 3:
            raise ValueError("ack_timeout_ms must be under a third of heartbeat_timeout_ms")
        if self.reconnect_max_s < self.reconnect_backoff_s:
            raise ValueError("reconnect_max_s must be at least reconnect_backoff_s")
        return self


class ModbusRtuConfig(ConfigModel):
    """The station as a Modbus RTU slave that the PLC polls: see docs/plc.md for the register map."""

    kind: Literal["modbus_rtu"] = Field("modbus_rtu", description="PLC link type.")
    port: str = Field(..., min_length=1, description="The RS-485/RS-232 serial port.")
    baud: int = Field(19200, gt=0, description="Serial speed.")
    parity: Literal["N", "E", "O"] = Field("E", description="Parity: Modbus RTU's default is even.")
    stopbits: Literal[1, 2] = Field(1, description="Stop bits (2 is usual without parity).")
    unit_id: int = Field(1, ge=1, le=247, description="The station's Modbus slave address.")
    results_buffer: int = Field(8, ge=1, le=256, description="Results kept while the PLC has not "
                                "acknowledged the current one; one more sets RESULTS_OVERRUN and "
                                "drops the oldest.")
    heartbeat_interval_ms: float = Field(500.0, gt=0, description="The heartbeat register counts up "
                                         "this often while the inspection loop is alive.")
    stall_timeout_ms: float | None = Field(None, gt=0, description="The heartbeat stops and ERROR is "
                                           "set when the loop had a part waiting and made no "
                                           "progress for this long. Null: as for the bridge.")


PlcConfig = Annotated[NoPlcConfig | BridgeConfig | ModbusRtuConfig, Field(discriminator="kind")]
