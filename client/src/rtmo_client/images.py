"""Turn what the user passes as an image into what goes on the wire, without decoding anything.

Accepted images:

- a path (``str`` or ``os.PathLike``): the file's bytes are sent as they are;
- ``bytes`` (also ``bytearray``, ``memoryview``): one encoded image file (JPEG, PNG, BMP, or any other format the
  server decodes), sent as it is;
- a NumPy ``uint8`` array of shape ``(H, W, 3)``: a raw frame, sent to the ``rtmo_frames`` model. Its channel order
  must be stated with ``channels="bgr"`` (OpenCV) or ``channels="rgb"`` (PIL, imageio); RGB is flipped to BGR.

Encoded files are validated by the server (its ``INVALID_ARGUMENT`` message reaches the caller intact); the
client only reads the size from JPEG, PNG and BMP headers for :attr:`PoseResult.image_size` (None otherwise).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from rtmo_client.errors import InvalidInputError

__all__ = ["Channels", "EncodedImage", "Frame", "ImageInput", "Payload", "encoded_size", "to_payload"]

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | npt.NDArray[np.uint8]"
Channels = Literal["bgr", "rgb"]

_ACCEPTED = (
    "a path (str or os.PathLike), encoded image bytes (JPEG, PNG, ...), or a numpy uint8 array of shape (H, W, 3)"
)
_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # the rotations by 90 degrees swap width and height


@dataclass(frozen=True)
class EncodedImage:
    """An encoded file for the ``rtmo`` model and its size read from the header (None if unreadable)."""

    data: bytes
    size: tuple[int, int] | None


@dataclass(frozen=True)
class Frame:
    """A contiguous BGR ``uint8`` ``(H, W, 3)`` frame for the ``rtmo_frames`` model."""

    array: npt.NDArray[np.uint8]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.array.shape[1]), int(self.array.shape[0])


Payload: TypeAlias = "EncodedImage | Frame"


def to_payload(image: object, *, channels: Channels | None = None, name: str = "image") -> Payload:
    """Check one image and wrap it for sending.

    Args:
        image: See the module docstring.
        channels: Channel order of a NumPy frame; required for frames, ignored otherwise.
        name: How error messages call this input (e.g. ``images[3]``).

    Returns:
        An :class:`EncodedImage` or a :class:`Frame`.

    Raises:
        InvalidInputError: an unreadable path, an unsupported type, a frame of the wrong dtype or shape, or a frame
            without ``channels``.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise InvalidInputError(
                f"{name}: cannot read {path!r} ({error.strerror or error}); give an existing image file"
            ) from None
        return EncodedImage(data, encoded_size(data))
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return EncodedImage(data, encoded_size(data))
    if isinstance(image, np.ndarray):
        return Frame(_checked_frame(image, channels, name))
    raise InvalidInputError(f"{name}: got {type(image).__name__}; accepted: {_ACCEPTED}")


def _checked_frame(array: npt.NDArray[np.generic], channels: Channels | None, name: str) -> npt.NDArray[np.uint8]:
    if array.dtype != np.uint8:
        raise InvalidInputError(f"{name}: numpy dtype {array.dtype}; accepted: uint8 of shape (H, W, 3)")
    if array.ndim != 3 or array.shape[2] != 3:
        raise InvalidInputError(
            f"{name}: numpy shape {tuple(array.shape)}; accepted: (H, W, 3) uint8 (gray or RGBA: convert first)"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"{name}: empty frame of shape {tuple(array.shape)}; height and width must be >= 1")
    if channels == "bgr":
        return np.ascontiguousarray(array, dtype=np.uint8)
    if channels == "rgb":
        return np.ascontiguousarray(array[:, :, ::-1], dtype=np.uint8)
    raise InvalidInputError(
        f"{name}: a numpy frame needs its channel order stated: channels='bgr' (OpenCV) or channels='rgb' "
        f"(PIL, imageio); got channels={channels!r}"
    )


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of an encoded JPEG, PNG or BMP from its header, EXIF orientation applied; None if unknown."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if data[:2] == b"BM":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(int(width)), abs(int(height))
    except (struct.error, IndexError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset, orientation = 2, 1
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD9 or marker == 0x01:  # fill byte or a segment without length
            offset += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        segment = data[offset + 4 : offset + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(segment[6:])
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame, not DHT/JPG/DAC
            height, width = struct.unpack(">HH", segment[1:5])
            return (height, width) if orientation in _SWAPPED_ORIENTATIONS else (width, height)
        elif marker == 0xDA:  # start of scan: no frame header came first
            return None
        offset += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag of the first IFD of a TIFF-structured EXIF block (1 = upright when absent)."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for entry in range(count):
        start = ifd + 2 + 12 * entry
        tag, _type, _count = struct.unpack(order + "HHI", tiff[start : start + 8])
        if tag == _EXIF_ORIENTATION_TAG:
            return int(struct.unpack(order + "H", tiff[start + 8 : start + 10])[0])
    return 1
