"""Turn what the user passes as an image into what goes on the wire, without decoding anything.

Accepted images:

- a path (``str`` or ``os.PathLike``): the file's bytes are sent as they are;
- ``bytes`` (also ``bytearray``, ``memoryview``): one encoded image file (JPEG, PNG, BMP, or any other format the
  server decodes), sent as it is;
- a NumPy ``uint8`` array of shape ``(H, W, 3)``: a raw frame, sent to the ``rtmo_frames`` model. Its channel order
  must be stated with ``channels="bgr"`` (OpenCV) or ``channels="rgb"`` (PIL, imageio); RGB is flipped to BGR.

Encoded files are validated and decoded by the server only (its ``INVALID_ARGUMENT`` message reaches the caller
intact); it also returns each image's size, :attr:`PoseResult.image_size`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from rtmo_client.errors import InvalidInputError

__all__ = ["Channels", "EncodedImage", "Frame", "ImageInput", "Payload", "to_payload"]

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | npt.NDArray[np.uint8]"
Channels = Literal["bgr", "rgb"]

_ACCEPTED = (
    "a path (str or os.PathLike), encoded image bytes (JPEG, PNG, ...), or a numpy uint8 array of shape (H, W, 3)"
)


@dataclass(frozen=True)
class EncodedImage:
    """An encoded file for the ``rtmo`` model, sent as it is."""

    data: bytes


@dataclass(frozen=True)
class Frame:
    """A contiguous BGR ``uint8`` ``(H, W, 3)`` frame for the ``rtmo_frames`` model."""

    array: npt.NDArray[np.uint8]


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
        return EncodedImage(data)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return EncodedImage(data)
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
