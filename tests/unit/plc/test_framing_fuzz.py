"""Property tests of the host's serial framing (plc/framing.py): COBS, CRC, frames and the stream
decoder on any bytes a noisy line can deliver (issue 13, deliverable 3)."""

from __future__ import annotations

import struct
from dataclasses import fields

from hypothesis import given
from hypothesis import strategies as st

from edge_inspector.plc import protocol as p
from edge_inspector.plc.framing import FrameError, cobs_decode, cobs_encode, decode_raw, encode_raw
from edge_inspector.plc.messages import MESSAGE_TYPES, ProtocolError

_RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF)}


@st.composite
def messages(draw) -> p.Message:
    """Any message of the protocol, with every field in its wire range (enum fields: members)."""
    cls = draw(st.sampled_from(sorted(MESSAGE_TYPES.values(), key=lambda c: c.TYPE)))
    values = []
    for f, code in zip(fields(cls), cls.FORMAT[1:], strict=True):
        enum = cls.ENUMS.get(f.name)
        values.append(draw(st.sampled_from(list(enum))) if enum else draw(st.integers(*_RANGES[code])))
    return cls(*values)


@given(st.binary(max_size=600))
def test_cobs_round_trips_and_never_encodes_a_zero(data):
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


@given(st.binary(max_size=80))
def test_cobs_decode_of_any_bytes_is_data_or_a_frame_error(data):
    try:
        out = cobs_decode(data)
    except FrameError:
        return
    assert isinstance(out, bytes)


@given(messages(), st.integers(0, 255))
def test_every_message_survives_the_wire(msg, seq):
    wire = p.encode_frame(seq, msg)
    assert wire.endswith(b"\x00") and 0 not in wire[:-1] and len(wire) - 1 <= p.MAX_ENCODED
    frame = p.decode_frame(wire[:-1])
    assert (frame.seq, frame.message) == (seq, msg)


@given(messages(), st.integers(0, 255), st.data())
def test_a_burst_of_up_to_16_bad_bits_in_a_frame_is_always_caught(msg, seq, data):
    raw = encode_raw(msg.TYPE, seq, msg.pack())
    start = data.draw(st.integers(0, len(raw) - 1))
    width = data.draw(st.integers(1, min(16, 8 * (len(raw) - start))))
    pattern = data.draw(st.integers(1, 2**width - 1)) | (1 << (width - 1)) | 1  # a burst of `width`
    value = int.from_bytes(raw, "big") ^ (pattern << (8 * (len(raw) - start) - width))
    bad = value.to_bytes(len(raw), "big")
    try:
        decode_raw(bad)
    except FrameError:
        return
    raise AssertionError(f"CRC-16 missed a {width}-bit burst: {raw.hex()} -> {bad.hex()}")


@given(st.lists(st.one_of(messages().map(lambda m: ("frame", m)), st.binary(max_size=50).map(
    lambda b: ("noise", b))), max_size=12), st.data())
def test_the_stream_decoder_finds_every_frame_between_noise_however_the_bytes_are_split(items, data):
    """Noise is ended by a delimiter before each frame (as the host's leading delimiter does);
    the bytes arrive in chunks of any size. Every frame is found, in order; nothing raises."""
    stream, want = bytearray(), []
    for seq, (kind, item) in enumerate(items):
        if kind == "frame":
            stream += p.encode_frame(seq & 0xFF, item, leading_delimiter=True)
            want.append((seq & 0xFF, item))
        else:
            stream += item
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder, got = p.StreamDecoder(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(bytes(stream[a:b]))
    found = [(f.seq, f.message) for f in got]
    assert [x for x in found if x in want] == want  # noise may, rarely, hold a valid frame itself


@given(st.binary(max_size=400))
def test_the_stream_decoder_takes_any_bytes_and_counts_what_it_drops(data):
    decoder = p.StreamDecoder()
    frames = decoder.feed(data)
    assert all(isinstance(f, p.Frame) for f in frames)
    assert decoder.bad_frames + decoder.bad_messages + len(frames) <= data.count(0) + 1
    assert decoder.last_error is None or isinstance(decoder.last_error, ProtocolError)


@given(st.integers(0, 255), st.integers(0, 255), st.binary(min_size=0, max_size=32))
def test_a_frame_with_a_good_crc_and_a_bad_payload_is_a_message_error_with_its_seq(mtype, seq, payload):
    raw = encode_raw(mtype, seq, payload)
    try:
        frame = p.decode_frame(cobs_encode(raw))
    except p.MessageError as exc:
        assert exc.seq == seq and exc.msg_type == mtype  # NAKable: its seq can be trusted
        return
    assert frame.seq == seq and frame.message.TYPE == mtype
    assert frame.message.pack() == payload


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF)), max_size=100))
def test_the_history_remembers_the_last_frames_with_their_answers(keys):
    history = p.SeqHistory(16)
    for i, (seq, crc) in enumerate(keys):
        history.add(p.Frame(seq, p.Heartbeat(), crc), None if i % 2 else p.NakReason.BAD_VALUE)
    assert len(history) == min(16, len(keys))
    for i, (seq, crc) in enumerate(keys[-16:]):
        seen, _ = history.lookup(p.Frame(seq, p.Heartbeat(), crc))
        assert seen


def test_struct_layouts_match_the_protocol_lengths():
    lengths = {"HELLO": 8, "CONFIG": 6, "ARM": 6, "DECIDE": 5, "TRIGGER": 10, "APPLIED": 11,
               "FAILSAFE": 12, "FAULT": 6, "STATUS": 24, "INFO": 10, "NAK": 1, "STATION": 1}
    for cls in MESSAGE_TYPES.values():
        assert struct.calcsize(cls.FORMAT) == lengths.get(cls.TYPE.name, 0), cls
