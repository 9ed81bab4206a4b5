"""The bridge protocol codec (edge_inspector.plc.protocol), and the C core's host tests."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_inspector.plc import protocol as p

ROOT = Path(__file__).resolve().parents[3]
FIRMWARE = ROOT / "firmware_bridge"

# Shared with firmware_bridge/test/test_host.c (VEC_DECIDE, VEC_ACK0): the same bytes there.
VEC_DECIDE = bytes.fromhex("0a 04 07 78 56 34 12 01 15 d9 00")  # DECIDE seq 7 part 0x12345678 REJECT
VEC_ACK0 = bytes.fromhex("02 80 03 97 06 00")  # ACK of seq 0

SAMPLES: list[p.Message] = [
    p.Hello(p.PROTOCOL_VERSION, 1, 2, 3, 0xDEADBEEF),
    p.Config(50, 1000, p.Verdict.REJECT, p.Verdict.PASS),
    p.Arm(0xFFFFFFFF, 60000),
    p.Decide(0, p.Verdict.PASS),
    p.Decide(0x12345678, p.Verdict.REJECT),
    p.Heartbeat(),
    p.StatusRequest(),
    p.Trigger(1, 123456, 999),
    p.Applied(7, p.Verdict.REJECT, 0xFFFFFFFF, 0),
    p.Failsafe(8, p.FailsafeReason.HEARTBEAT, p.Verdict.PASS, 10, 500),
    p.Fault(p.FaultCode.HEARTBEAT_LOST, 1, 42),
    p.Status(0x0F, 2, 16, 20, 1, 2, 3, 65535, 4, 0xFFFFFFFF),
    p.Info(1, 0, 1, 0, 0, 16, 8),
    p.Ack(),
    p.Nak(p.NakReason.TABLE_FULL),
]


def test_crc16_ccitt_false_check_value():
    assert p.crc16_ccitt_false(b"123456789") == 0x29B1
    assert p.crc16_ccitt_false(b"") == 0xFFFF


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
    ],
)
def test_cobs_vectors(raw, encoded):
    assert p.cobs_encode(raw) == encoded
    assert p.cobs_decode(encoded) == raw


def test_cobs_random_round_trips():
    rng = random.Random(1)
    for _ in range(2000):
        data = bytes(rng.choice((0, rng.randrange(256))) for _ in range(rng.randrange(600)))
        enc = p.cobs_encode(data)
        assert 0 not in enc
        assert len(enc) <= len(data) + len(data) // 254 + 1
        assert p.cobs_decode(enc) == data


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x03\x00\x22", b"\x00"])
def test_cobs_malformed(bad):
    with pytest.raises(p.FrameError):
        p.cobs_decode(bad)


def test_known_vectors_match_the_c_core():
    assert p.encode_frame(7, p.Decide(0x12345678, p.Verdict.REJECT)) == VEC_DECIDE
    assert p.encode_frame(0, p.Ack()) == VEC_ACK0
    frame = p.decode_frame(VEC_DECIDE[:-1])
    assert frame.seq == 7 and frame.message == p.Decide(0x12345678, p.Verdict.REJECT)


def test_payload_lengths_match_the_spec():
    # PROTOCOL.md / proto.h LEN_* values
    expected = {
        p.Hello: 8, p.Config: 6, p.Arm: 6, p.Decide: 5, p.Heartbeat: 0, p.StatusRequest: 0,
        p.Trigger: 10, p.Applied: 11, p.Failsafe: 12, p.Fault: 6, p.Status: 24, p.Info: 10,
        p.Ack: 0, p.Nak: 1,
    }
    assert {cls: cls.payload_len() for cls in expected} == expected
    assert max(expected.values()) <= p.MAX_PAYLOAD


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("seq", [0, 1, 127, 255])
def test_round_trip(msg, seq):
    data = p.encode_frame(seq, msg)
    assert data.endswith(b"\x00") and 0 not in data[:-1]
    frame = p.decode_frame(data[:-1])
    assert frame.seq == seq and frame.message == msg
    assert type(frame.message) is type(msg)


def test_enum_fields_decode_as_enums():
    msg = p.decode_frame(p.encode_frame(3, p.Failsafe(1, 2, 1, 0, 0))[:-1]).message
    assert msg.reason is p.FailsafeReason.HEARTBEAT and msg.action is p.Verdict.REJECT


def test_encode_rejects_out_of_range_values():
    with pytest.raises(ValueError):
        p.encode_frame(0, p.Arm(2**32, 10))
    with pytest.raises(ValueError):
        p.encode_frame(0, p.Arm(1, 70000))
    with pytest.raises(ValueError):
        p.encode_frame(256, p.Heartbeat())


def _frame(msg_type: int, seq: int, payload: bytes) -> bytes:
    return p.cobs_encode(p.encode_raw(msg_type, seq, payload))


def test_good_crc_but_invalid_message_says_what_to_nak():
    with pytest.raises(p.MessageError) as exc:
        p.decode_frame(_frame(0x33, 9, b""))
    assert exc.value.reason is p.NakReason.UNKNOWN_TYPE and exc.value.seq == 9
    with pytest.raises(p.MessageError) as exc:
        p.decode_frame(_frame(p.MsgType.DECIDE, 4, b"\x01\x02\x03"))
    assert exc.value.reason is p.NakReason.BAD_LENGTH and exc.value.seq == 4
    with pytest.raises(p.MessageError) as exc:
        p.decode_frame(_frame(p.MsgType.DECIDE, 5, b"\x01\x00\x00\x00\x07"))
    assert exc.value.reason is p.NakReason.BAD_VALUE


def test_bad_crc_and_bad_length_are_frame_errors():
    raw = bytearray(p.encode_raw(p.MsgType.HEARTBEAT, 1, b""))
    raw[-1] ^= 0x01
    with pytest.raises(p.FrameError):
        p.decode_frame(p.cobs_encode(bytes(raw)))
    with pytest.raises(p.FrameError):
        p.decode_frame(p.cobs_encode(b"\x05\x01\x02"))  # shorter than header + CRC
    with pytest.raises(p.FrameError):
        p.decode_frame(b"\x42" * (p.MAX_ENCODED + 1))


def test_stream_decoder_splits_and_resynchronises():
    dec = p.StreamDecoder()
    stream = (
        b"\x00\x00"  # leading delimiters: no error
        + b"\x13\x37\x99"  # garbage before a delimiter: one bad frame
        + b"\x00"
        + p.encode_frame(1, p.Heartbeat())
        + p.encode_frame(2, p.Decide(5, p.Verdict.PASS), leading_delimiter=True)
        + b"\x42" * 100  # oversized: one bad frame
        + b"\x00"
        + VEC_DECIDE
    )
    frames = [f for i in range(len(stream)) for f in dec.feed(stream[i : i + 1])]  # byte by byte
    assert [f.seq for f in frames] == [1, 2, 7]
    assert dec.bad_frames == 2 and dec.bad_messages == 0
    dec2 = p.StreamDecoder()
    assert [f.seq for f in dec2.feed(stream)] == [1, 2, 7]  # all at once


def test_stream_decoder_counts_invalid_messages():
    dec = p.StreamDecoder()
    assert dec.feed(_frame(0x33, 9, b"") + b"\x00") == []
    assert dec.bad_messages == 1 and isinstance(dec.last_error, p.MessageError)
    assert dec.last_error.seq == 9


def test_random_garbage_never_decodes():
    rng = random.Random(2)
    dec = p.StreamDecoder()
    garbage = bytes(0 if rng.random() < 1 / 16 else rng.randrange(256) for _ in range(300_000))
    assert dec.feed(garbage) == []
    assert dec.bad_frames > 10_000


def test_single_bit_flips_never_decode():
    rng = random.Random(3)
    frames = [p.encode_frame(rng.randrange(256), msg) for msg in SAMPLES]
    for data in frames:
        for bit in range((len(data) - 1) * 8):  # every bit but the delimiter's
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            dec = p.StreamDecoder()
            assert dec.feed(b"\x00" + bytes(flipped)) == [], (data.hex(), bit)


def test_random_multi_byte_corruption_never_yields_a_wrong_message():
    rng = random.Random(4)
    for _ in range(3000):
        msg = rng.choice(SAMPLES)
        data = bytearray(p.encode_frame(5, msg))
        for _ in range(rng.randrange(2, 5)):
            data[rng.randrange(len(data) - 1)] = rng.randrange(256)
        for frame in p.StreamDecoder().feed(b"\x00" + bytes(data)):
            # a 16-bit CRC lets one in 65536 random corruptions through; it must then be the
            # untouched original (corruption that happened to leave it intact)
            assert frame.message == msg and frame.seq == 5


def test_seq_wrap_around():
    assert p.seq_next(254) == 255 and p.seq_next(255) == 0
    seqs = [250]
    for _ in range(10):
        seqs.append(p.seq_next(seqs[-1]))
    assert seqs[-1] == 4
    hist = p.SeqHistory(size=16)
    frames = [p.decode_frame(p.encode_frame(s, p.Arm(s, 100))[:-1]) for s in seqs]
    for f in frames:
        hist.add(f, p.NakReason.TABLE_FULL if f.seq == 255 else None)
    assert hist.lookup(frames[5]) == (True, p.NakReason.TABLE_FULL)  # seq 255
    assert hist.lookup(frames[6]) == (True, None)  # seq 0, after the wrap
    # the same seq with other content (a new frame after a wrap or a restart) is not a duplicate
    other = p.decode_frame(p.encode_frame(0, p.Arm(12345, 100))[:-1])
    assert hist.lookup(other) == (False, None)


def test_seq_history_ages_out():
    hist = p.SeqHistory(size=4)
    frames = [p.decode_frame(p.encode_frame(s, p.Heartbeat())[:-1]) for s in range(6)]
    for f in frames:
        hist.add(f)
    assert len(hist) == 4
    assert hist.lookup(frames[0])[0] is False and hist.lookup(frames[5])[0] is True


def test_c_host_tests():
    """Build and run the C protocol core's host tests (make -C firmware_bridge host-test)."""
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc or make not installed: cannot build the C host tests")
    result = subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE), "host-test"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failures" in result.stdout
