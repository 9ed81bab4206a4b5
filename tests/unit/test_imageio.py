import cv2
import numpy as np
import pytest

from edge_inspector.errors import ImageError
from edge_inspector.imageio import decode_image, load_image


@pytest.fixture
def jpeg_bytes():
    img = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251).astype(np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_decodes_a_good_jpeg(jpeg_bytes):
    assert decode_image(jpeg_bytes).shape == (64, 64)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b"", "empty file"),
    (lambda b: b[: len(b) // 2], "truncated JPEG"),
    (lambda b: b"not an image at all", "not a readable image"),
])
def test_bad_bytes_raise_a_named_error(jpeg_bytes, mangle, message):
    with pytest.raises(ImageError, match=message):
        decode_image(mangle(jpeg_bytes), "part.jpg")


def test_truncated_png(tmp_path):
    data = cv2.imencode(".png", np.zeros((32, 32), np.uint8))[1].tobytes()
    (tmp_path / "t.png").write_bytes(data[:-20])
    with pytest.raises(ImageError, match="t.png: truncated PNG"):
        load_image(tmp_path / "t.png")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_color_and_16_bit_images_become_8_bit():
    bgr = decode_image(cv2.imencode(".png", np.full((8, 8, 4), 200, np.uint8))[1].tobytes())
    assert bgr.shape == (8, 8, 3)
    deep = decode_image(cv2.imencode(".png", np.full((8, 8), 65535, np.uint16))[1].tobytes())
    assert deep.dtype == np.uint8 and deep.max() == 255


# --- hostile and cut images (issue 13, items 6 and 7) --------------------------------------------

import os  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import zlib  # noqa: E402

from edge_inspector.imageio import image_size  # noqa: E402


def textured(h=120, w=160, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((h, w, channels)) * 255).astype(np.uint8), (5, 5), 2)
    return img.reshape(h, w, channels) if channels > 1 else img.reshape(h, w)


JPEG_KINDS = {
    "baseline": [],
    "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
    "restarts": [cv2.IMWRITE_JPEG_RST_INTERVAL, 6],
    "progressive-restarts": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 2],
}


@pytest.mark.parametrize("kind", JPEG_KINDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_a_good_jpeg_of_every_kind_decodes_also_with_bytes_after_its_end(kind, channels):
    data = cv2.imencode(".jpg", textured(channels=channels), JPEG_KINDS[kind])[1].tobytes()
    plain = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decode_image(data), plain)
    assert decode_image(data + b"camera trailer \x00\x01").shape[:2] == (120, 160)
    assert image_size(data) == ("JPEG", 160, 120)


@pytest.mark.parametrize("kind", JPEG_KINDS)
@pytest.mark.parametrize("fraction", [0.35, 0.5, 0.62, 0.8, 0.95, 0.995])
def test_a_cut_jpeg_with_an_end_marker_appended_is_refused_not_grey_filled(kind, fraction):
    data = cv2.imencode(".jpg", textured(), JPEG_KINDS[kind])[1].tobytes()
    cut = data[: int(len(data) * fraction)] + b"\xff\xd9"
    assert cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_UNCHANGED) is not None  # OpenCV would
    with pytest.raises(ImageError, match="part.jpg: (truncated|corrupt) JPEG"):
        decode_image(cut, "part.jpg")


def test_every_cut_of_a_small_jpeg_is_refused():
    for kind, params in JPEG_KINDS.items():
        data = cv2.imencode(".jpg", textured(40, 56, seed=3), params)[1].tobytes()
        for n in range(4, len(data) - 2):
            with pytest.raises(ImageError):
                decode_image(data[:n] + b"\xff\xd9", f"{kind}-{n}")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def hostile_png(width=60000, height=60000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))


def test_a_png_header_claiming_60000x60000_is_refused_by_name_before_decoding():
    with pytest.raises(ImageError, match=r"huge.png: PNG of 60000x60000 pixels is over the limit"):
        decode_image(hostile_png(), "huge.png")


def test_max_pixels_is_the_callers():
    data = cv2.imencode(".png", np.zeros((100, 100), np.uint8))[1].tobytes()
    assert decode_image(data, max_pixels=10_000).shape == (100, 100)
    with pytest.raises(ImageError, match="100x100 pixels is over the limit of 9999"):
        decode_image(data, max_pixels=9_999)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".pgm", ".ppm"])
def test_every_supported_format_has_its_size_read_from_the_header(ext):
    img = textured(37, 53, channels=1 if ext == ".pgm" else 3)
    data = cv2.imencode(ext, img)[1].tobytes()
    assert image_size(data)[1:] == (53, 37)
    assert decode_image(data).shape[:2] == (37, 53)


def patched(data: bytes, at: int, fmt: str, *values) -> bytes:
    return data[:at] + struct.pack(fmt, *values) + data[at + struct.calcsize(fmt):]


def test_hostile_sizes_in_other_formats_are_refused_too():
    bmp = cv2.imencode(".bmp", textured(8, 8))[1].tobytes()
    with pytest.raises(ImageError, match="BMP of 60000x60000"):
        decode_image(patched(bmp, 18, "<ii", 60000, -60000))
    jpg = cv2.imencode(".jpg", textured(8, 8))[1].tobytes()
    sof = jpg.index(b"\xff\xc0")
    with pytest.raises(ImageError, match="JPEG of 60000x60000"):
        decode_image(patched(jpg, sof + 5, ">HH", 60000, 60000))
    pgm = b"P5\n# a comment\n60000 60000\n255\n" + b"\x00" * 64
    with pytest.raises(ImageError, match="PNM of 60000x60000"):
        decode_image(pgm)


def test_foreign_and_cut_headers_are_named():
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(b"GIF89a" + b"\x00" * 40, "x.gif")
    with pytest.raises(ImageError, match="truncated PNG"):
        decode_image(hostile_png()[:30])
    with pytest.raises(ImageError, match="truncated PNG"):
        decode_image(hostile_png()[:-12] + png_chunk(b"IEND", b"")[:6])


def test_a_png_with_a_bad_crc_or_cut_image_data_is_refused():
    good = cv2.imencode(".png", textured())[1].tobytes()
    bad = bytearray(good)
    bad[60] ^= 0x40  # inside the first IDAT
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(bytes(bad))
    idat = good.index(b"IDAT") - 4
    n = struct.unpack(">I", good[idat:idat + 4])[0]
    cut = good[:idat] + png_chunk(b"IDAT", good[idat + 8:idat + 8 + n // 2]) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(cut)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "part.png"
    os.mkfifo(fifo)
    box: dict = {}

    def load():
        try:
            load_image(fifo)
        except ImageError as exc:
            box["error"] = str(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(30)  # generous: it returns at once, a blocked read would never return
    if t.is_alive():  # unblock the reader so the thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_image blocked on a FIFO")
    assert box["error"] == f"{fifo}: not a regular file (a FIFO)"


def test_a_folder_named_like_an_image_is_refused(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path / "dir.png")


def test_a_good_jpeg_decodes_without_a_word_on_stderr_and_other_output_is_kept(capfd):
    from edge_inspector.imageio import _libjpeg_quiet

    data = cv2.imencode(".jpg", textured())[1].tobytes()
    capfd.readouterr()
    decode_image(data)
    assert capfd.readouterr().err == ""  # libjpeg skipped the filler, and said nothing about it
    with _libjpeg_quiet():
        os.write(2, b"a log line from another thread\n")
        os.write(2, b"Corrupt JPEG data: 47 extraneous bytes before marker 0xd9\n")
    assert capfd.readouterr().err == "a log line from another thread\n"
