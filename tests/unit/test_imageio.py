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
