"""Tiny encoded files whose headers claim a size of our choosing: decompression bombs and header-parsing cases."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    """``image`` encoded by OpenCV in the format of ``ext``."""
    return cv2.imencode(ext, image)[1].tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims ``width`` x ``height`` (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0"))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A real lossless WebP (VP8L) whose 14-bit size fields are rewritten to claim ``width`` x ``height`` (<= 16384)."""
    data = bytearray(cv2.imencode(".webp", np.zeros((8, 8, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0] & ~0x0FFFFFFF
    data[21:25] = struct.pack("<I", bits | (width - 1) | (height - 1) << 14)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A real 1x1 TIFF whose ImageWidth and ImageLength tags are rewritten to claim ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".tiff", np.zeros((1, 1, 3), np.uint8))[1].tobytes())
    assert data[:4] == b"II*\0"
    ifd = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        at = ifd + 2 + 12 * entry
        tag = struct.unpack("<H", data[at : at + 2])[0]
        if tag in (256, 257):  # ImageWidth, ImageLength: rewrite as one LONG
            data[at + 2 : at + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
    return bytes(data)
