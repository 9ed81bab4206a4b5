"""Reading images safely: an empty, truncated or foreign file is an :class:`ImageError`, never a
half-decoded image. OpenCV happily decodes a truncated JPEG into a grey-filled picture, so the
container is checked before decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_inspector.errors import ImageError, StartupError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes to uint8 (HxW grey or HxWx3 BGR). Raises ImageError naming ``name``."""
    if not data:
        raise ImageError(f"{name}: empty file")
    if data.startswith(_JPEG) and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")
    if data.startswith(_PNG) and b"IEND" not in data[-32:]:
        raise ImageError(f"{name}: truncated PNG (no IEND chunk)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"{name}: not a readable image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode one image file. Raises ImageError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from exc
    return decode_image(data, str(path))


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """Like :func:`load_image` for start-up files: a failure is a StartupError."""
    try:
        return load_image(path)
    except ImageError as exc:
        raise StartupError(f"{what} {exc}") from exc


def to_gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
