"""Messages of the firmware bridge protocol (see ``firmware_bridge/PROTOCOL.md``): the enums, the
message dataclasses with their little-endian payload layouts, and the type -> class table.

Pure code, no I/O. Framing (COBS, CRC, frames, the stream decoder) is in :mod:`edge_inspector.plc.framing`;
:mod:`edge_inspector.plc.protocol` re-exports both and is what the rest of the code imports.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar

PROTOCOL_VERSION = 1


class MsgType(IntEnum):
    HELLO = 0x01
    CONFIG = 0x02
    ARM = 0x03
    DECIDE = 0x04
    HEARTBEAT = 0x05
    STATUS_REQUEST = 0x06
    STATION = 0x07
    TRIGGER = 0x41
    APPLIED = 0x42
    FAILSAFE = 0x43
    FAULT = 0x44
    STATUS = 0x45
    INFO = 0x46
    ACK = 0x80
    NAK = 0x81


class Verdict(IntEnum):
    PASS = 0
    REJECT = 1


class FailsafeReason(IntEnum):
    DEADLINE = 1
    HEARTBEAT = 2


class FaultCode(IntEnum):
    NOT_CONFIGURED = 1
    HEARTBEAT_LOST = 2
    STATION = 3  # the host said it cannot do its job (it cannot record): READY off, FAULT on


class NakReason(IntEnum):
    UNKNOWN_TYPE = 1
    BAD_LENGTH = 2
    BAD_VALUE = 3
    VERSION = 4
    NOT_CONFIGURED = 5
    TABLE_FULL = 6
    DUPLICATE_PART = 7
    UNKNOWN_PART = 8
    PART_FAILSAFED = 9
    PART_DECIDED = 10


class StatusFlag(IntFlag):
    CONFIGURED = 0x01
    READY = 0x02
    FAULT = 0x04
    REJECT_ACTIVE = 0x08


class ProtocolError(ValueError):
    """Bytes that are not a valid frame or message."""


class MessageError(ProtocolError):
    """A frame with a good CRC whose message is not valid. ``seq`` and ``reason`` say what to NAK."""

    def __init__(self, message: str, *, seq: int, msg_type: int, reason: NakReason) -> None:
        super().__init__(message)
        self.seq = seq
        self.msg_type = msg_type
        self.reason = reason


@dataclass(frozen=True)
class Message:
    """Base of all messages. ``FORMAT`` is the payload's struct layout."""

    TYPE: ClassVar[MsgType]
    FORMAT: ClassVar[str] = "<"
    #: fields whose value must be a member of an enum: name -> enum
    ENUMS: ClassVar[dict[str, type[IntEnum]]] = {}

    def pack(self) -> bytes:
        try:
            return struct.pack(self.FORMAT, *astuple(self))
        except struct.error as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from exc

    @classmethod
    def payload_len(cls) -> int:
        return struct.calcsize(cls.FORMAT)

    @classmethod
    def unpack(cls, payload: bytes, *, seq: int = 0) -> Message:
        if len(payload) != cls.payload_len():
            raise MessageError(
                f"{cls.TYPE.name}: payload of {len(payload)} bytes, expected {cls.payload_len()}",
                seq=seq,
                msg_type=cls.TYPE,
                reason=NakReason.BAD_LENGTH,
            )
        values = list(struct.unpack(cls.FORMAT, payload))
        names = [f.name for f in fields(cls)]
        for name, enum in cls.ENUMS.items():
            k = names.index(name)
            try:
                values[k] = enum(values[k])
            except ValueError:
                raise MessageError(
                    f"{cls.TYPE.name}: {name}={values[k]} is not a valid {enum.__name__}",
                    seq=seq,
                    msg_type=cls.TYPE,
                    reason=NakReason.BAD_VALUE,
                ) from None
        return cls(*values)


# host -> bridge
@dataclass(frozen=True)
class Hello(Message):
    TYPE = MsgType.HELLO
    FORMAT = "<BBBBI"
    protocol_version: int = PROTOCOL_VERSION
    host_major: int = 0
    host_minor: int = 0
    host_patch: int = 0
    session: int = 0  # a random nonzero number per host start: a new one resets duplicate detection


@dataclass(frozen=True)
class Config(Message):
    TYPE = MsgType.CONFIG
    FORMAT = "<HHBB"
    ENUMS = {"failsafe_on_deadline": Verdict, "failsafe_on_heartbeat": Verdict}
    reject_pulse_ms: int
    heartbeat_timeout_ms: int
    failsafe_on_deadline: Verdict = Verdict.REJECT
    failsafe_on_heartbeat: Verdict = Verdict.REJECT


@dataclass(frozen=True)
class Arm(Message):
    TYPE = MsgType.ARM
    FORMAT = "<IH"
    part_id: int
    deadline_ms: int  # from the moment the bridge receives the frame


@dataclass(frozen=True)
class Decide(Message):
    TYPE = MsgType.DECIDE
    FORMAT = "<IB"
    ENUMS = {"verdict": Verdict}
    part_id: int
    verdict: Verdict


@dataclass(frozen=True)
class Heartbeat(Message):
    TYPE = MsgType.HEARTBEAT


@dataclass(frozen=True)
class StatusRequest(Message):
    TYPE = MsgType.STATUS_REQUEST


@dataclass(frozen=True)
class Station(Message):
    """The station's own fault: ``code`` 3 (:attr:`FaultCode.STATION`, the station cannot record)
    turns READY off and FAULT on while the bridge goes on arming and deciding parts; 0 clears it."""

    TYPE = MsgType.STATION
    FORMAT = "<B"
    code: int = 0


# bridge -> host (times are the MCU's: ms since boot, plus microseconds within the ms)
@dataclass(frozen=True)
class Trigger(Message):
    TYPE = MsgType.TRIGGER
    FORMAT = "<IIH"
    count: int
    t_ms: int
    t_us: int


@dataclass(frozen=True)
class Applied(Message):
    TYPE = MsgType.APPLIED
    FORMAT = "<IBIH"
    ENUMS = {"action": Verdict}
    part_id: int
    action: Verdict
    t_ms: int
    t_us: int


@dataclass(frozen=True)
class Failsafe(Message):
    TYPE = MsgType.FAILSAFE
    FORMAT = "<IBBIH"
    ENUMS = {"reason": FailsafeReason, "action": Verdict}
    part_id: int
    reason: FailsafeReason
    action: Verdict
    t_ms: int
    t_us: int


@dataclass(frozen=True)
class Fault(Message):
    TYPE = MsgType.FAULT
    FORMAT = "<BBI"
    code: int  # a FaultCode; unknown codes from newer firmware are kept as ints
    active: int
    t_ms: int


@dataclass(frozen=True)
class Status(Message):
    TYPE = MsgType.STATUS
    FORMAT = "<BBBBIIIHHI"
    flags: int  # StatusFlag bits
    fault_code: int
    pending: int
    tx_queue: int
    triggers: int
    decided: int
    failsafes: int
    rx_bad_frames: int
    tx_dropped: int
    uptime_ms: int


@dataclass(frozen=True)
class Info(Message):
    TYPE = MsgType.INFO
    FORMAT = "<BBBBIBB"
    protocol_version: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    session: int  # 0: sent at boot (the bridge restarted), else the HELLO's session
    max_pending: int
    reset_cause: int  # MCUSR: 1 power-on, 2 external, 4 brown-out, 8 watchdog


# both directions; the frame's seq is the seq of the frame answered
@dataclass(frozen=True)
class Ack(Message):
    TYPE = MsgType.ACK


@dataclass(frozen=True)
class Nak(Message):
    TYPE = MsgType.NAK
    FORMAT = "<B"
    reason: int  # a NakReason; kept as int so an unknown reason still decodes


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Config, Arm, Decide, Heartbeat, StatusRequest, Station, Trigger, Applied, Failsafe,
                Fault, Status, Info, Ack, Nak)
}

