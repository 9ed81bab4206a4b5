"""Codec of the firmware bridge protocol (see ``firmware_bridge/PROTOCOL.md``).

Pure functions and small classes, no I/O: COBS framing with a 0x00 delimiter, CRC-16/CCITT-FALSE,
the message dataclasses, frame encode/decode, a stream decoder that drops garbled frames (and
counts them), and the receive history used to recognise retransmitted frames. The serial driver
builds on this.

A frame on the wire is ``COBS(type u8 | seq u8 | payload | crc16 u16 LE) 0x00``; all multi-byte
fields are little-endian. ACK and NAK carry, in their seq field, the seq of the frame they answer.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import astuple, dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar

logging.getLogger(__name__).addHandler(logging.NullHandler())

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 32
HEADER_LEN = 2
CRC_LEN = 2
MIN_RAW = HEADER_LEN + CRC_LEN
MAX_RAW = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
MAX_ENCODED = MAX_RAW + 1  # COBS overhead for frames under 254 bytes; the delimiter not included
DELIMITER = b"\x00"
#: The bridge remembers this many received frames for duplicate detection: the host keeps at most
#: half as many unacknowledged.
BRIDGE_HISTORY = 16
HOST_WINDOW = BRIDGE_HISTORY // 2


class MsgType(IntEnum):
    HELLO = 0x01
    CONFIG = 0x02
    ARM = 0x03
    DECIDE = 0x04
    HEARTBEAT = 0x05
    STATUS_REQUEST = 0x06
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


class FrameError(ProtocolError):
    """Not a frame: bad COBS, bad length or bad CRC. The sequence number cannot be trusted."""


class MessageError(ProtocolError):
    """A frame with a good CRC whose message is not valid. ``seq`` and ``reason`` say what to NAK."""

    def __init__(self, message: str, *, seq: int, msg_type: int, reason: NakReason) -> None:
        super().__init__(message)
        self.seq = seq
        self.msg_type = msg_type
        self.reason = reason


# ---- CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0) ------------------------
def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


# ---- COBS ------------------------------------------------------------------------------------------
def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(0xFF)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise FrameError("COBS: block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError("COBS: zero byte inside a frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# ---- messages --------------------------------------------------------------------------------------
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
    for cls in (Hello, Config, Arm, Decide, Heartbeat, StatusRequest, Trigger, Applied, Failsafe,
                Fault, Status, Info, Ack, Nak)
}


# ---- frames ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    seq: int
    message: Message
    crc: int  # with seq, the key for duplicate detection


def seq_next(seq: int) -> int:
    return (seq + 1) & 0xFF


def encode_raw(msg_type: int, seq: int, payload: bytes) -> bytes:
    """The unencoded frame with its CRC."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = bytes((msg_type & 0xFF, seq & 0xFF)) + payload
    return body + struct.pack("<H", crc16_ccitt_false(body))


def encode_frame(seq: int, message: Message, *, leading_delimiter: bool = False) -> bytes:
    """Bytes to write: COBS-encoded frame and its 0x00 delimiter (optionally one before, to end any
    partial frame the receiver holds)."""
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq {seq} is not a byte")
    data = cobs_encode(encode_raw(message.TYPE, seq, message.pack())) + DELIMITER
    return DELIMITER + data if leading_delimiter else data


def decode_raw(raw: bytes) -> tuple[int, int, bytes, int]:
    """(type, seq, payload, crc) of an unencoded frame; FrameError if its length or CRC is bad."""
    if not MIN_RAW <= len(raw) <= MAX_RAW:
        raise FrameError(f"frame of {len(raw)} bytes, expected {MIN_RAW}..{MAX_RAW}")
    (crc,) = struct.unpack_from("<H", raw, len(raw) - CRC_LEN)
    if crc16_ccitt_false(raw[:-CRC_LEN]) != crc:
        raise FrameError("CRC mismatch")
    return raw[0], raw[1], raw[HEADER_LEN:-CRC_LEN], crc


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame (without its delimiter). FrameError for garbled bytes, MessageError for a
    well-formed frame with an unknown type or a bad payload."""
    if len(encoded) > MAX_ENCODED:
        raise FrameError(f"frame of {len(encoded)} encoded bytes exceeds {MAX_ENCODED}")
    msg_type, seq, payload, crc = decode_raw(cobs_decode(encoded))
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        raise MessageError(
            f"unknown message type 0x{msg_type:02x}", seq=seq, msg_type=msg_type,
            reason=NakReason.UNKNOWN_TYPE,
        )
    return Frame(seq=seq, message=cls.unpack(payload, seq=seq), crc=crc)


class StreamDecoder:
    """Splits a byte stream on 0x00 and decodes the frames. Garbled frames (bad COBS, length or
    CRC) are dropped and counted in ``bad_frames``; frames with a good CRC but an invalid message
    are dropped and counted in ``bad_messages`` (``last_error`` keeps the latest, for a NAK)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.bad_frames = 0
        self.bad_messages = 0
        self.last_error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._append(data[start:])
                return frames
            self._append(data[start:end])
            frame = self._finish()
            if frame is not None:
                frames.append(frame)
            start = end + 1

    def _append(self, chunk: bytes) -> None:
        if self._overflow:
            return
        self._buf += chunk
        if len(self._buf) > MAX_ENCODED:
            self._overflow = True
            self._buf.clear()

    def _finish(self) -> Frame | None:
        encoded, overflow = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            self.bad_frames += 1
            self.last_error = FrameError("frame too long")
            return None
        if not encoded:
            return None  # back-to-back delimiters are allowed
        try:
            return decode_frame(encoded)
        except MessageError as exc:
            self.bad_messages += 1
            self.last_error = exc
        except FrameError as exc:
            self.bad_frames += 1
            self.last_error = exc
        return None


class SeqHistory:
    """The last ``size`` frames received, keyed by (seq, crc), with the answer given to each
    (None = ACK, else a NakReason). A retransmitted frame is byte-identical, so it is found here and
    answered again without being applied twice; a new frame that reuses a seq (after wrap-around or
    a restart of the peer) has other content and is not. ``size`` must exceed the peer's window of
    unacknowledged frames (the bridge's is 20)."""

    _ACK = object()

    def __init__(self, size: int = 64) -> None:
        self._entries: deque[tuple[int, int, object]] = deque(maxlen=size)

    def lookup(self, frame: Frame) -> tuple[bool, NakReason | None]:
        """(seen, answer)."""
        for seq, crc, answer in self._entries:
            if seq == frame.seq and crc == frame.crc:
                return True, None if answer is self._ACK else answer  # type: ignore[return-value]
        return False, None

    def add(self, frame: Frame, answer: NakReason | None = None) -> None:
        self._entries.append((frame.seq, frame.crc, self._ACK if answer is None else answer))

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
