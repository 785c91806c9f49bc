"""Stage 1 of the data path: an encoded image or a raw frame -> a checked uint8 HxWx3 BGR array -> the letterboxed
network input and the ``Letterbox`` that maps results back (MMPose's ``BottomupResize``: resize mode 'fit', centred,
pad 114, one bilinear warp).

The image size is read from the file header (Pillow, which parses headers lazily), and images above the pixel
limit are refused *before* decoding, so a tiny file that claims 30000x30000 pixels (a decompression bomb) costs
nothing. Decoding uses OpenCV's ``IMREAD_COLOR``: EXIF orientation is applied, grayscale and RGBA become BGR,
16-bit samples become 8-bit.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from rtmo.errors import InvalidInputError

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "Letterbox",
    "PAD_VALUE",
    "decode_image",
    "header_size",
    "letterbox",
    "letterbox_batch",
    "validate_frame",
]

DEFAULT_MAX_PIXELS = 50_000_000
PAD_VALUE = 114
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
    raise InvalidInputError(
        f"{name}: WEBP header is truncated or corrupt (no VP8/VP8L/VP8X size); send a complete WebP file"
    )


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
        raise InvalidInputError(
            f"{name}: {kind.upper()} header says {width}x{height} pixels; width and height must be >= 1"
        )
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{name}: {kind.upper()} of {width}x{height} = {width * height} pixels is too large; "
            f"accepted: at most {max_pixels} pixels"
        )
    _check_complete(kind, data, name)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InvalidInputError(
            f"{name}: {kind.upper()} could not be decoded (corrupt or truncated data); send a valid {ACCEPTED_FORMATS}"
        )
    return np.ascontiguousarray(image)


def validate_frame(frame: object, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "frame") -> np.ndarray:
    """Check a raw frame: a uint8 HxWx3 BGR array, non-empty, at most ``max_pixels``; returns it C-contiguous.

    Raises:
        InvalidInputError: not an array, wrong dtype or shape, empty or too large.
    """
    if not isinstance(frame, np.ndarray):
        raise InvalidInputError(f"{name}: got {type(frame).__name__}; accepted: a numpy.ndarray (UINT8, HxWx3, BGR)")
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


@dataclass(frozen=True)
class Letterbox:
    """Where an image sits inside the network input; MMPose's ``input_center``/``input_scale``/``input_size``."""

    center: np.ndarray  # (2,) float32, image centre (x, y) in image pixels
    scale: np.ndarray  # (2,) float32, image-pixel extent covered by the whole network input
    input_size: tuple[int, int]  # (width, height) of the network input

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image: the centre is exactly half of it."""
        return int(round(2 * float(self.center[0]))), int(round(2 * float(self.center[1])))

    def as_array(self) -> np.ndarray:
        """(6,) float32 ``[cx, cy, sx, sy, in_w, in_h]``: the form passed between Triton models."""
        return np.array([*self.center, *self.scale, *self.input_size], dtype=np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> Letterbox:
        values = np.asarray(values, dtype=np.float32).reshape(6)
        return cls(center=values[0:2].copy(), scale=values[2:4].copy(), input_size=(int(values[4]), int(values[5])))


def _warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    # Three point pairs in float32, as mmpose.structures.bbox.get_warp_matrix builds them (rot=0, no shift).
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([scale[0] * -0.5, 0.0])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([dst_w * -0.5, 0.0])
    for pts in (src, dst):
        direction = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-direction[1], direction[0]])
    return cv2.getAffineTransform(src, dst)


def letterbox(
    image: np.ndarray, input_size: tuple[int, int], *, name: str = "image", out: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Fit ``image`` (uint8 HxWx3, checked as :func:`validate_frame` does, ``name`` in errors) into ``input_size``
    (w, h), centred, padded with 114, one bilinear warp.

    Args:
        out: a C-contiguous uint8 (h, w, 3) array to write the canvas into (a batch's row: no copy to stack them).

    Returns:
        The network input canvas (uint8, h x w x 3; ``out`` when given) and the ``Letterbox`` needed to map results
        back.
    """
    image = validate_frame(image, max_pixels=np.iinfo(np.int64).max, name=name)
    img_h, img_w = image.shape[:2]
    pad_w, pad_h = input_size
    ratio = img_w / img_h
    rsz_w = min(pad_w, pad_h * ratio)
    rsz_h = min(pad_h, pad_w / ratio)
    center = np.array([img_w / 2, img_h / 2], dtype=np.float32)
    scale = np.array([img_w * pad_w / rsz_w, img_h * pad_h / rsz_h], dtype=np.float32)
    matrix = _warp_matrix(center, scale, (pad_w, pad_h))
    if out is None:
        out = np.empty((pad_h, pad_w, 3), np.uint8)
    elif out.shape != (pad_h, pad_w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out: {out.dtype} {out.shape}; accepted: C-contiguous uint8 {(pad_h, pad_w, 3)}")
    if not _translated(image, matrix, out):
        cv2.warpAffine(image, matrix, (pad_w, pad_h), dst=out, flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    return out, Letterbox(center=center, scale=scale, input_size=(pad_w, pad_h))


def _translated(image: np.ndarray, matrix: np.ndarray, canvas: np.ndarray) -> bool:
    """Write the warp into ``canvas`` when it is a translation by whole or half pixels, without warpAffine; False
    (nothing written) otherwise.

    Scale 1 is the letterbox of every image whose longer side is the input size (VGA and COCO's 640-pixel photos
    into 640). A whole-pixel shift samples the source pixels themselves: a copy into the padding. A half-pixel shift
    (an odd padding, e.g. 427 rows into 640) samples midway between two rows or columns, where warpAffine's fixed
    point weighs both by exactly 1/2 and rounds half up: the rounded mean of neighbours, with the padding value
    beyond the edges. Both equal warpAffine's result to the bit (tested) at a fifth of its cost or less.
    """
    # getAffineTransform leaves ~1e-16 of rounding; warpAffine's 1/1024-pixel fixed point cannot see it.
    doubled = np.round(matrix[:, 2] * 2)
    if not np.allclose(matrix, np.column_stack([np.eye(2), doubled / 2]), rtol=0, atol=1e-9):
        return False
    half_x, half_y = (int(d) % 2 == 1 for d in doubled)
    if half_x and half_y:  # not a letterbox at scale 1 (only one side is padded); warpAffine does it
        return False
    x0, y0 = (int(d) // 2 for d in doubled)  # floor: with a half shift, the first sample straddles the edge
    height, width = image.shape[:2]
    covered_w, covered_h = width + half_x, height + half_y
    size_h, size_w = canvas.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + covered_w > size_w or y0 + covered_h > size_h:
        return False
    # only the padding is filled: the image's region is written once
    canvas[:y0] = PAD_VALUE
    canvas[y0 + covered_h :] = PAD_VALUE
    canvas[y0 : y0 + covered_h, :x0] = PAD_VALUE
    canvas[y0 : y0 + covered_h, x0 + covered_w :] = PAD_VALUE
    region = canvas[y0 : y0 + covered_h, x0 : x0 + covered_w]
    if half_y:
        _midpoints(image, region)
    elif half_x:
        _midpoints(image.swapaxes(0, 1), region.swapaxes(0, 1))
    else:
        region[...] = image
    return True


def _midpoints(image: np.ndarray, out: np.ndarray) -> None:
    """``out`` (n + 1 rows) = the rounded-up mean of each pair of adjacent rows of ``image`` (n rows) padded with one
    row of ``PAD_VALUE`` above and below."""
    above, below = image[:-1], image[1:]
    np.subtract(above | below, (above ^ below) >> 1, out=out[1:-1])  # ceil((a + b) / 2) without leaving uint8
    out[0] = (image[0].astype(np.uint16) + PAD_VALUE + 1) >> 1
    out[-1] = (image[-1].astype(np.uint16) + PAD_VALUE + 1) >> 1


def unletterbox(points: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map (..., 2) input-pixel points back to image pixels (MMPose ``add_pred_to_datasample``)."""
    size = np.asarray(box.input_size, dtype=np.float64)
    return points / size * box.scale + box.center - 0.5 * box.scale


def letterbox_batch(pictures: Sequence[np.ndarray], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox every picture of a batch: ``(B, h, w, 3)`` uint8 network inputs and ``(B, 6)`` letterboxes."""
    width, height = input_size
    canvases = np.empty((len(pictures), height, width, 3), np.uint8)
    boxes = [letterbox(picture, input_size, out=canvases[i])[1] for i, picture in enumerate(pictures)]
    return canvases, np.stack([box.as_array() for box in boxes])
