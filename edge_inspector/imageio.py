"""Reading images safely: an empty, truncated, oversized or foreign file is an :class:`ImageError`
naming the file and the problem, never a crash and never a half-decoded image.

Before anything is decoded, the header is read here (PNG, JPEG, BMP, TIFF, WebP, PNM; anything
else is refused) and an image of more than ``max_pixels`` is refused, so a 60000x60000 header cannot
make the decoder allocate gigabytes (or raise ``cv2.error``). A file that is not a regular file (a
FIFO, a device) is refused without reading from it, so it cannot block the replay.

Truncation: OpenCV decodes a cut JPEG into a grey-filled picture, also when an end marker was
appended after the cut (libjpeg only prints "premature end of data segment" on stderr). So a JPEG
is walked segment by segment (every segment complete, every scan ended by a marker, the restart
markers a scan must hold, a progressive scan script that reaches full precision), and then decoded
twice, with one of two fillers before its end marker; the fillers differ in every bit. A complete
scan reads neither, a cut one decodes the filler as its missing data, and the two pictures differ.
This costs a second decode of JPEGs only, and needs no decoder beyond the libjpeg inside OpenCV.
libjpeg prints a warning on stderr for the filler a complete scan skips; those two decodes run with
the process's stderr held in a file, and everything else written there meanwhile (other threads'
log lines) is written out after them.
PNG needs less: libpng refuses missing image data and bad CRCs itself; the chunk walk names a cut
file.
"""

from __future__ import annotations

import os
import random
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.errors import ImageError, StartupError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
DEFAULT_MAX_PIXELS = 64 * 2**20  # 67 Mpixel, 8192 x 8192: above any area-scan camera we drive

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
# two fillers, each the other's complement and neither holding 0x00 or 0xFF (no marker): a complete
# scan reads neither, a cut scan decodes them as its missing data, and the two pictures differ
_FILLER = bytes(b for b in random.Random(13).randbytes(96) if b not in (0x00, 0xFF))[:48]
_FILLER_NOT = bytes(b ^ 0xFF for b in _FILLER)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_LOSSLESS = {0xC3, 0xC7, 0xCB, 0xCF}


def _u16(d: bytes, i: int, big: bool = True) -> int:
    return int.from_bytes(d[i:i + 2], "big" if big else "little")


def _u32(d: bytes, i: int, big: bool = True) -> int:
    return int.from_bytes(d[i:i + 4], "big" if big else "little")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# --- headers -----------------------------------------------------------------------------------

def _png_size(d: bytes, name: str) -> tuple[int, int]:
    if len(d) < 33 or d[12:16] != b"IHDR":
        raise ImageError(f"{name}: truncated PNG (no complete IHDR chunk)")
    pos = 8
    while True:  # the chunks: length, type, data, CRC (libpng checks the CRCs)
        if pos + 12 > len(d):
            raise ImageError(f"{name}: truncated PNG (no IEND chunk)")
        n, kind = _u32(d, pos), d[pos + 4:pos + 8]
        if not kind.isalpha() or n > 2**31 - 1:
            raise ImageError(f"{name}: corrupt PNG (bad chunk at byte {pos})")
        if pos + 12 + n > len(d):
            raise ImageError(f"{name}: truncated PNG ({kind.decode()} chunk cut at byte {len(d)})")
        pos += 12 + n
        if kind == b"IEND":
            return _u32(d, 16), _u32(d, 20)


def _jpeg_size(d: bytes, name: str) -> tuple[int, int, int]:
    """(width, height, position of the end marker), after the structural walk."""
    pos, frame, restart, scans = 2, None, 0, 0
    coverage: dict[int, set[int]] = {}  # component -> coefficients brought to full precision
    while True:
        if pos + 2 > len(d):
            raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")
        if d[pos] != 0xFF:
            raise ImageError(f"{name}: corrupt JPEG (no marker at byte {pos})")
        marker = d[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        pos += 2
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if pos + 2 > len(d) or _u16(d, pos) < 2 or pos + _u16(d, pos) > len(d):
            raise ImageError(f"{name}: truncated JPEG (segment 0x{marker:02X} cut at byte {len(d)})")
        seg = d[pos + 2:pos + _u16(d, pos)]
        pos += _u16(d, pos)
        if marker in _SOF and len(seg) >= 6:
            comps = {seg[6 + 3 * i]: (seg[7 + 3 * i] >> 4, seg[7 + 3 * i] & 15)
                     for i in range(seg[5]) if 8 + 3 * i < len(seg)}
            frame = (marker, _u16(seg, 3), _u16(seg, 1), comps)
        elif marker == 0xDD and len(seg) >= 2:
            restart = _u16(seg, 0)
        elif marker == 0xDA:
            if frame is None or not seg or len(seg) < 4 + 2 * seg[0]:
                raise ImageError(f"{name}: corrupt JPEG (scan before the frame header)")
            ids = [seg[1 + 2 * i] for i in range(seg[0])]
            ss, se, al = seg[1 + 2 * seg[0]], seg[2 + 2 * seg[0]], seg[3 + 2 * seg[0]] & 15
            pos, markers = _scan_end(d, pos, name)
            scans += 1
            for c in ids:
                coverage.setdefault(c, set()).update(range(ss, se + 1) if al == 0 else ())
            if restart and markers < _ceil(_mcus(frame, ids), restart) - 1:
                raise ImageError(f"{name}: truncated JPEG (a scan holds {markers + 1} of its "
                                 f"{_ceil(_mcus(frame, ids), restart)} restart intervals)")
    if frame is None or scans == 0:
        raise ImageError(f"{name}: corrupt JPEG (no frame header or no scan)")
    kind, width, height, comps = frame
    if width == 0 or height == 0:
        raise ImageError(f"{name}: JPEG with a height defined after the scan (DNL) is not supported")
    want = set(range(64)) if kind in _PROGRESSIVE else set() if kind in _LOSSLESS else {0}
    if any(c not in coverage or not want <= coverage[c] for c in comps):
        raise ImageError(f"{name}: truncated JPEG (scans missing: not every component is complete)")
    end = pos - 2
    while end > 0 and d[end - 1] == 0xFF:  # fill bytes, or the first half of a cut FF 00 pair
        end -= 1
    return width, height, end


def _mcus(frame: tuple, ids: list[int]) -> int:
    """The MCUs of a scan of ``ids``: restart intervals count these."""
    _, w, h, comps = frame
    hmax = max(c[0] for c in comps.values()) or 1
    vmax = max(c[1] for c in comps.values()) or 1
    if len(ids) == 1 and ids[0] in comps:  # non-interleaved: one block per MCU
        hi, vi = comps[ids[0]]
        return _ceil(_ceil(w * hi, hmax), 8) * _ceil(_ceil(h * vi, vmax), 8)
    return _ceil(w, 8 * hmax) * _ceil(h, 8 * vmax)


def _scan_end(d: bytes, pos: int, name: str) -> tuple[int, int]:
    """Where the entropy-coded data from ``pos`` ends (the next marker), and its restart markers."""
    restarts = 0
    while True:
        j = d.find(b"\xff", pos)
        if j < 0 or j + 1 >= len(d):
            raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")
        nxt = d[j + 1]
        if nxt == 0x00 or nxt == 0xFF:
            pos = j + (2 if nxt == 0x00 else 1)
        elif 0xD0 <= nxt <= 0xD7:
            restarts += 1
            pos = j + 2
        else:
            return j, restarts


def _tiff_size(d: bytes, name: str) -> tuple[int, int]:
    big_endian, big = d[:2] == b"MM", _u16(d, 2, d[:2] == b"MM") == 43
    u = (lambda i, n: int.from_bytes(d[i:i + n], "big" if big_endian else "little"))
    off = u(8, 8) if big else u(4, 4)
    count_size, entry, value_at = (8, 20, 12) if big else (2, 12, 8)
    if off + count_size > len(d):
        raise ImageError(f"{name}: truncated TIFF (no image directory)")
    size: dict[int, int] = {}
    for k in range(min(u(off, count_size), 4096)):
        e = off + count_size + k * entry
        if e + entry > len(d):
            break
        tag, kind = u(e, 2), u(e + 2, 2)
        if tag in (256, 257):
            size[tag] = u(e + value_at, 2 if kind == 3 else 8 if kind == 16 else 4)
    if 256 not in size or 257 not in size:
        raise ImageError(f"{name}: corrupt TIFF (no image width or length)")
    return size[256], size[257]


def _webp_size(d: bytes, name: str) -> tuple[int, int]:
    kind = d[12:16]
    if kind == b"VP8 " and d[23:26] == b"\x9d\x01\x2a" and len(d) >= 30:
        return _u16(d, 26, False) & 0x3FFF, _u16(d, 28, False) & 0x3FFF
    if kind == b"VP8L" and len(d) >= 25 and d[20] == 0x2F:
        bits = _u32(d, 21, False)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(d) >= 30:
        return int.from_bytes(d[24:27], "little") + 1, int.from_bytes(d[27:30], "little") + 1
    raise ImageError(f"{name}: corrupt WebP (no frame header)")


def _pnm_size(d: bytes, name: str) -> tuple[int, int]:
    tokens: list[bytes] = []
    for line in d[2:4096].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    if len(tokens) < 2 or not all(t.isdigit() for t in tokens[:2]):
        raise ImageError(f"{name}: corrupt PNM header")
    return int(tokens[0]), int(tokens[1])


def image_size(data: bytes, name: str = "image") -> tuple[str, int, int]:
    """(format, width, height) from the header alone. Raises ImageError for a cut or unknown one."""
    return _header(data, name)[:3]


def _header(data: bytes, name: str) -> tuple[str, int, int, int]:
    """(format, width, height, position of a JPEG's end marker or 0)."""
    if data.startswith(_PNG):
        return ("PNG", *_png_size(data, name), 0)
    if data.startswith(_JPEG):
        return ("JPEG", *_jpeg_size(data, name))
    return (*_other_size(data, name), 0)


def _other_size(data: bytes, name: str) -> tuple[str, int, int]:
    if data[:2] == b"BM" and len(data) >= 26:
        if _u32(data, 14, False) == 12:
            return "BMP", _u16(data, 18, False), _u16(data, 20, False)
        w, h = (int.from_bytes(data[i:i + 4], "little", signed=True) for i in (18, 22))
        return "BMP", w, abs(h)
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") and len(data) >= 16:
        return ("TIFF", *_tiff_size(data, name))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("WebP", *_webp_size(data, name))
    if len(data) > 2 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return ("PNM", *_pnm_size(data, name))
    raise ImageError(f"{name}: not a readable image (not PNG, JPEG, BMP, TIFF, WebP or PNM)")


# --- decoding ----------------------------------------------------------------------------------

_STDERR_LOCK = threading.Lock()
_LIBJPEG_WARNINGS = (b"Corrupt JPEG data", b"Premature end of JPEG file")


@contextmanager
def _libjpeg_quiet() -> Iterator[None]:
    """Hold file descriptor 2 in a file while libjpeg warns about the filler on purpose; write out
    what else came meanwhile, less libjpeg's warnings."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as held:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep quiet
            yield
            return
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = b"".join(line for line in held.read().splitlines(keepends=True)
                            if not line.startswith(_LIBJPEG_WARNINGS))
            if rest:
                os.write(2, rest)


def _imdecode(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def decode_image(data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to uint8 (HxW grey or HxWx3 BGR). Raises ImageError naming ``name``."""
    if not data:
        raise ImageError(f"{name}: empty file")
    fmt, width, height, end = _header(data, name)
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: {fmt} header gives a size of {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(f"{name}: {fmt} of {width}x{height} pixels is over the limit of "
                         f"{max_pixels} pixels (max_pixels); not decoded")
    try:
        if fmt == "JPEG":
            with _libjpeg_quiet():
                img = _imdecode(data[:end] + _FILLER + data[end:])
                other = _imdecode(data[:end] + _FILLER_NOT + data[end:])
            if img is not None and (other is None or other.shape != img.shape
                                    or not np.array_equal(other, img)):
                raise ImageError(f"{name}: truncated JPEG (its last scan is cut short)")
        else:
            img = _imdecode(data)
    except cv2.error as exc:
        raise ImageError(f"{name}: the decoder refused it ({str(exc).strip().splitlines()[-1]})") from None
    if img is None or img.size == 0:
        raise ImageError(f"{name}: not a readable image")
    if img.shape[0] * img.shape[1] > max_pixels:  # the header lied
        raise ImageError(f"{name}: decoded to {img.shape[1]}x{img.shape[0]} pixels, over max_pixels")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{name}: {img.dtype} pixels are not supported (8 or 16 bit only)")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def read_bytes(path: str | Path, max_bytes: int) -> bytes:
    """A regular file's bytes. A FIFO, device or folder is refused without reading from it (a FIFO
    would block for ever), and so is a file over ``max_bytes``. Raises ImageError naming ``path``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode)
                    else "a device or socket")
            raise ImageError(f"{path}: not a regular file ({kind})")
        if st.st_size > max_bytes:
            raise ImageError(f"{path}: {st.st_size} bytes is more than an image within max_pixels")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read and decode one image file. Raises ImageError naming the file."""
    data = read_bytes(path, max_bytes=max_pixels * 8 + 2**24)  # 16-bit RGBA, uncompressed
    return decode_image(data, str(path), max_pixels)


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """Like :func:`load_image` for start-up files: a failure is a StartupError."""
    try:
        return load_image(path)
    except ImageError as exc:
        raise StartupError(f"{what} {exc}") from exc


def to_gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
