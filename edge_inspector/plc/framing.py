"""Framing of the firmware bridge protocol (see ``firmware_bridge/PROTOCOL.md``).

Pure functions and small classes, no I/O: COBS framing with a 0x00 delimiter, CRC-16/CCITT-FALSE,
frame encode/decode, a stream decoder that drops garbled frames (and counts them), and the receive
history used to recognise retransmitted frames. The messages themselves are in
:mod:`edge_inspector.plc.messages`; :mod:`edge_inspector.plc.protocol` re-exports both.

A frame on the wire is ``COBS(type u8 | seq u8 | payload | crc16 u16 LE) 0x00``; all multi-byte
fields are little-endian. ACK and NAK carry, in their seq field, the seq of the frame they answer.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from edge_inspector.plc.messages import MESSAGE_TYPES, Message, MessageError, NakReason, ProtocolError

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


class FrameError(ProtocolError):
    """Not a frame: bad COBS, bad length or bad CRC. The sequence number cannot be trusted."""


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
