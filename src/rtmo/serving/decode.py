"""Turn one request's image bytes or raw frame into a checked uint8 HxWx3 BGR array.

The image size is read from the file header (Pillow, which parses headers lazily), and images above the pixel
limit are refused *before* decoding, so a tiny file that claims 30000x30000 pixels (a decompression bomb) costs
nothing. Decoding uses OpenCV's ``IMREAD_COLOR``: EXIF orientation is applied, grayscale and RGBA become BGR,
16-bit samples become 8-bit.
"""

from __future__ import annotations

import io
import struct
import warnings

import cv2
import numpy as np
from PIL import Image

from rtmo.errors import InvalidInputError

__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "decode_image", "header_size", "validate_frame"]

DEFAULT_MAX_PIXELS = 50_000_000
ACCEPTED_FORMATS = "JPEG, PNG, BMP, WebP or TIFF"
# Pillow plugin names of the formats whose header Pillow reads lazily; OpenCV decodes. Pillow's WebP plugin
# allocates the whole canvas when it opens a file, so WebP headers are read by _webp_size instead.
_PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "TIFF")


def _webp_size(data: bytes, name: str) -> tuple[int, int]:
    """Canvas size from a WebP's first chunk (RFC 9649: VP8X canvas, VP8L or VP8 key-frame header)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    raise InvalidInputError(f"{name}: WEBP header is truncated or corrupt (no VP8/VP8L/VP8X size); send a complete WebP file")


def header_size(data: bytes, name: str = "image") -> tuple[str, int, int]:
    """Read ``(format, width, height)`` from an encoded image's header without decoding its pixels.

    Args:
        data: the encoded file.
        name: input name used in error messages.

    Returns:
        ``("jpeg" | "png" | "bmp" | "webp" | "tiff", width, height)``.

    Raises:
        InvalidInputError: empty data, an unsupported format, or a header too short or corrupt to hold the size.
    """
    if not data:
        raise InvalidInputError(f"{name}: empty (0 bytes); send one encoded {ACCEPTED_FORMATS} image per batch row")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp", *_webp_size(data, name))
    Image.init()  # registers the format plugins once
    for plugin in _PILLOW_FORMATS:
        # Pillow's plugin registry directly rather than Image.open: the pixel limit is ours (configurable, with an
        # exact WxH message), and Image.open would apply Pillow's own global limit first.
        factory, accept = Image.OPEN[plugin]
        if accept is not None and accept(data[:16]) is not True:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. corrupt EXIF: OpenCV decides whether the pixels decode
                header = factory(io.BytesIO(data), "")
        except (OSError, SyntaxError, ValueError, IndexError, struct.error) as error:
            raise InvalidInputError(
                f"{name}: {plugin} header is truncated or corrupt ({error}); send a complete {ACCEPTED_FORMATS} file"
            ) from None
        width, height = header.size
        return plugin.lower(), width, height
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
        data: the encoded JPEG, PNG, BMP, WebP or TIFF file.
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
        raise InvalidInputError(f"{name}: {kind.upper()} could not be decoded (corrupt or truncated data); send a valid {ACCEPTED_FORMATS}")
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
