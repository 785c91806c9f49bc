"""Turn one request's image bytes or raw frame into a checked uint8 HxWx3 BGR array.

The image size is read from the file header, and images above the pixel limit are refused *before* decoding,
so a tiny file that claims 30000x30000 pixels (a decompression bomb) costs nothing. Decoding uses OpenCV's
``IMREAD_COLOR``: EXIF orientation is applied, grayscale and RGBA become BGR, 16-bit samples become 8-bit.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from rtmo.errors import InvalidInputError

__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "decode_image", "header_size", "validate_frame"]

DEFAULT_MAX_PIXELS = 50_000_000
ACCEPTED_FORMATS = "JPEG, PNG or BMP"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}


def _jpeg_size(data: bytes, name: str) -> tuple[int, int]:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise InvalidInputError(f"{name}: corrupt JPEG header (no marker at byte {offset}); send a valid JPEG")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in _STANDALONE_MARKERS:
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _SOF_MARKERS:
            if offset + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        offset += 2 + length
    raise InvalidInputError(f"{name}: JPEG header is truncated or has no frame size; send a complete JPEG")


def header_size(data: bytes, name: str = "image") -> tuple[str, int, int]:
    """Read ``(format, width, height)`` from an encoded image's header without decoding it.

    Args:
        data: the encoded file.
        name: input name used in error messages.

    Returns:
        ``("jpeg" | "png" | "bmp", width, height)``.

    Raises:
        InvalidInputError: empty data, an unsupported format, or a header too short to hold the size.
    """
    if not data:
        raise InvalidInputError(f"{name}: empty (0 bytes); send one encoded {ACCEPTED_FORMATS} image per batch row")
    if data[:3] == b"\xff\xd8\xff":
        return ("jpeg", *_jpeg_size(data, name))
    if data[:8] == _PNG_SIGNATURE:
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidInputError(f"{name}: PNG header is truncated (no IHDR chunk); send a complete PNG")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return "bmp", abs(width), abs(height)
    raise InvalidInputError(
        f"{name}: not a supported image ({len(data)} bytes starting {data[:8].hex()}); accepted: {ACCEPTED_FORMATS}"
    )


def _check_complete(kind: str, data: bytes, name: str) -> None:
    # OpenCV fills a truncated JPEG with grey and only warns; require the end-of-image marker after the first scan.
    if kind == "jpeg":
        scan = data.find(b"\xff\xda")
        if scan < 0 or data.rfind(b"\xff\xd9") < scan:
            raise InvalidInputError(f"{name}: JPEG is truncated (no end-of-image marker); send the complete file")
    elif kind == "png" and b"IEND" not in data[-32:]:
        raise InvalidInputError(f"{name}: PNG is truncated (no IEND chunk); send the complete file")


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Decode an encoded image into uint8 HxWx3 BGR, refusing oversized ones before decoding.

    Args:
        data: the encoded JPEG, PNG or BMP file.
        max_pixels: largest accepted width x height.
        name: input name used in error messages.

    Returns:
        The image, EXIF orientation applied.

    Raises:
        InvalidInputError: empty, unsupported, truncated, corrupt, zero-sized or too large.
    """
    kind, width, height = header_size(data, name)
    if width == 0 or height == 0:
        raise InvalidInputError(f"{name}: {kind.upper()} header says {width}x{height} pixels; width and height must be >= 1")
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{name}: {kind.upper()} of {width}x{height} = {width * height} pixels is too large; "
            f"accepted: at most {max_pixels} pixels"
        )
    _check_complete(kind, data, name)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InvalidInputError(f"{name}: {kind.upper()} could not be decoded (corrupt data); send a valid {ACCEPTED_FORMATS}")
    return np.ascontiguousarray(image)


def validate_frame(frame: np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "frame") -> np.ndarray:
    """Check a raw frame: uint8 HxWx3 BGR, non-empty, at most ``max_pixels``.

    Raises:
        InvalidInputError: wrong dtype, shape, empty or too large.
    """
    if frame.dtype != np.uint8:
        raise InvalidInputError(f"{name}: dtype {frame.dtype}; accepted: UINT8 (BGR, HxWx3)")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidInputError(f"{name}: shape {list(frame.shape)}; accepted: [H, W, 3] (BGR)")
    height, width = frame.shape[:2]
    if height == 0 or width == 0:
        raise InvalidInputError(f"{name}: empty ({width}x{height}); height and width must be >= 1")
    if height * width > max_pixels:
        raise InvalidInputError(
            f"{name}: {width}x{height} = {width * height} pixels is too large; accepted: at most {max_pixels} pixels"
        )
    return np.ascontiguousarray(frame)
