"""Property tests of image decoding (imageio.py): any bytes are an image or an ImageError naming
the problem, never another exception, never a picture bigger than allowed, never a cut file
decoded to grey fill (issue 13, deliverable 3)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_inspector.errors import ImageError
from edge_inspector.imageio import decode_image

MAX_PIXELS = 1_000_000


def decoded_or_refused(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray | None:
    try:
        img = decode_image(data, "fuzz", max_pixels)
    except ImageError as exc:
        assert str(exc).startswith("fuzz: ")  # named
        return None
    assert img.dtype == np.uint8 and img.ndim in (2, 3) and (img.ndim == 2 or img.shape[2] == 3)
    assert img.shape[0] * img.shape[1] <= max_pixels
    return img


@st.composite
def images(draw) -> np.ndarray:
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    channels = draw(st.sampled_from([1, 3]))
    seed = draw(st.integers(0, 2**32 - 1))
    img = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    if draw(st.booleans()):
        img = cv2.GaussianBlur(img, (5, 5), 2).reshape(h, w, channels)  # like a photo, not noise
    return img[:, :, 0] if channels == 1 else img


_PARAMS = {".png": [[]], ".jpg": [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 3]],
           ".bmp": [[]], ".tif": [[]], ".webp": [[]], ".pgm": [[]], ".ppm": [[]]}


@st.composite
def encoded(draw) -> tuple[str, bytes, np.ndarray]:
    img = draw(images())
    ext = draw(st.sampled_from(sorted(_PARAMS)))
    if ext == ".pgm" and img.ndim == 3:
        img = img[:, :, 0]
    if ext == ".ppm" and img.ndim == 2:
        img = np.dstack([img] * 3)
    params = draw(st.sampled_from(_PARAMS[ext]))
    return ext, cv2.imencode(ext, img, params)[1].tobytes(), img


@given(st.binary(max_size=2000))
def test_any_bytes_are_an_image_or_a_named_error(data):
    decoded_or_refused(data)


@given(encoded())
def test_every_format_decodes_to_its_image(item):
    ext, data, img = item
    out = decoded_or_refused(data)
    assert out is not None and out.shape[:2] == img.shape[:2]
    if ext in (".png", ".bmp", ".tif", ".pgm", ".ppm"):  # lossless
        assert np.array_equal(out, img)


@settings(max_examples=300)
@given(encoded(), st.data())
def test_a_mangled_file_is_an_image_or_a_named_error(item, data):
    _, good, _ = item
    raw = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "end"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "flip" and raw:
            raw[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[at:]
        elif kind == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            raw += b"\xff\xd9"
    decoded_or_refused(bytes(raw))


@settings(max_examples=200)
@given(images(), st.sampled_from(_PARAMS[".jpg"]), st.data())
def test_a_cut_jpeg_is_refused_with_or_without_an_end_marker_appended(img, params, data):
    good = cv2.imencode(".jpg", img, params)[1].tobytes()
    cut = data.draw(st.integers(2, len(good) - 3))
    tail = data.draw(st.sampled_from([b"", b"\xff\xd9"]))
    assert decoded_or_refused(good[:cut] + tail) is None


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.sampled_from([0, 2, 4, 6]))
def test_a_png_header_of_any_size_is_refused_before_decoding_when_too_big(w, h, color):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))
    try:
        decode_image(data, "hdr", MAX_PIXELS)
    except ImageError as exc:
        if w * h > MAX_PIXELS:
            assert "over the limit" in str(exc)
        return
    assert 0 < w * h <= MAX_PIXELS
