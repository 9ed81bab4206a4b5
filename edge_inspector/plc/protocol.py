"""Codec of the firmware bridge protocol (see ``firmware_bridge/PROTOCOL.md``).

Pure functions and small classes, no I/O: COBS framing with a 0x00 delimiter, CRC-16/CCITT-FALSE,
the message dataclasses, frame encode/decode, a stream decoder that drops garbled frames (and
counts them), and the receive history used to recognise retransmitted frames. The serial driver
builds on this.

A frame on the wire is ``COBS(type u8 | seq u8 | payload | crc16 u16 LE) 0x00``; all multi-byte
fields are little-endian. ACK and NAK carry, in their seq field, the seq of the frame they answer.

This module is the codec's public face: the messages live in :mod:`edge_inspector.plc.messages`,
the framing in :mod:`edge_inspector.plc.framing`, and both are re-exported here
(``from edge_inspector.plc import protocol as p; p.encode_frame(seq, p.Decide(...))``).
"""

from __future__ import annotations

import logging

from edge_inspector.plc.framing import (
    BRIDGE_HISTORY,
    CRC_LEN,
    DELIMITER,
    HEADER_LEN,
    HOST_WINDOW,
    MAX_ENCODED,
    MAX_PAYLOAD,
    MAX_RAW,
    MIN_RAW,
    Frame,
    FrameError,
    SeqHistory,
    StreamDecoder,
    cobs_decode,
    cobs_encode,
    crc16_ccitt_false,
    decode_frame,
    decode_raw,
    encode_frame,
    encode_raw,
    seq_next,
)
from edge_inspector.plc.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Ack,
    Applied,
    Arm,
    Config,
    Decide,
    Failsafe,
    FailsafeReason,
    Fault,
    FaultCode,
    Heartbeat,
    Hello,
    Info,
    Message,
    MessageError,
    MsgType,
    Nak,
    NakReason,
    ProtocolError,
    Status,
    StatusFlag,
    StatusRequest,
    Station,
    Trigger,
    Verdict,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BRIDGE_HISTORY", "CRC_LEN", "DELIMITER", "HEADER_LEN", "HOST_WINDOW", "MAX_ENCODED", "MAX_PAYLOAD",
    "MAX_RAW", "MESSAGE_TYPES", "MIN_RAW", "PROTOCOL_VERSION",
    "Ack", "Applied", "Arm", "Config", "Decide", "Failsafe", "FailsafeReason", "Fault", "FaultCode", "Frame",
    "FrameError", "Heartbeat", "Hello", "Info", "Message", "MessageError", "MsgType", "Nak", "NakReason",
    "ProtocolError", "SeqHistory", "Station", "Status", "StatusFlag", "StatusRequest", "StreamDecoder", "Trigger",
    "Verdict",
    "cobs_decode", "cobs_encode", "crc16_ccitt_false", "decode_frame", "decode_raw", "encode_frame",
    "encode_raw", "seq_next",
]
