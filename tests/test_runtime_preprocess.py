"""rtmo.runtime.preprocess: image headers, decoding (bombs, truncation, unusual files), frames, the letterbox."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from image_files import encode, jpeg_claiming, png_claiming, tiff_claiming, webp_claiming
from rtmo.errors import InvalidInputError
from rtmo.runtime.preprocess import (
    Letterbox,
    decode_image,
    header_size,
    letterbox,
    letterbox_batch,
    unletterbox,
    validate_frame,
)

PHOTO = Path(__file__).resolve().parents[1] / "data" / "photos" / "000000196141.jpg"


# ---------------------------------------------------------------------------------------------- encoded images
def jpeg_with_exif_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``image`` carrying an EXIF APP1 segment with the given orientation tag."""
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    jpeg = encode(image, ".jpg")
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_header_size_reads_every_accepted_format_without_decoding() -> None:
    assert header_size(PHOTO.read_bytes()) == ("jpeg", 640, 429)
    assert header_size(png_claiming(30000, 30000)) == ("png", 30000, 30000)
    assert header_size(webp_claiming(16000, 9000)) == ("webp", 16000, 9000)
    # The three WebP headers: lossy VP8, lossless VP8L, and extended VP8X (here: lossy with an alpha chunk).
    for channels, quality, chunk in [(3, 80, b"VP8 "), (3, 101, b"VP8L"), (4, 80, b"VP8X")]:
        webp = cv2.imencode(".webp", np.zeros((123, 457, channels), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, quality])[
            1
        ].tobytes()
        assert webp[12:16] == chunk and header_size(webp) == ("webp", 457, 123)
    assert header_size(tiff_claiming(30000, 20000)) == ("tiff", 30000, 20000)
    assert header_size(encode(np.zeros((5, 7, 3), np.uint8), ".bmp")) == ("bmp", 7, 5)


BOMBS = {
    "png": (png_claiming(30000, 30000), "30000x30000 = 900000000"),
    "jpeg": (jpeg_claiming(30000, 30000), "30000x30000 = 900000000"),
    "webp": (webp_claiming(16384, 16384), "16384x16384 = 268435456"),
    "tiff": (tiff_claiming(30000, 30000), "30000x30000 = 900000000"),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_decode_image_refuses_decompression_bomb_before_decoding(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(*args: object) -> None:
        raise AssertionError("cv2.imdecode must not run")

    data, pixels = BOMBS[kind]
    assert len(data) < 1000
    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(
        InvalidInputError, match=rf"image: {kind.upper()} of {pixels} pixels is too large; accepted: at most 50000000"
    ):
        decode_image(data)


@pytest.mark.parametrize("ext", [".webp", ".tiff", ".bmp", ".png"])
def test_decode_image_accepts_lossless_webp_tiff_bmp_and_png_unchanged(ext: str) -> None:
    image = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    np.testing.assert_array_equal(decode_image(cv2.imencode(ext, image, params)[1].tobytes()), image)


@pytest.mark.parametrize("ext", [".webp", ".tiff"])
def test_decode_image_refuses_truncated_webp_and_tiff(ext: str) -> None:
    data = encode(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8), ext)
    with pytest.raises(InvalidInputError, match=rf"image: {ext[1:].upper()} .*(truncated|corrupt)"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", r"image: empty \(0 bytes\)"),
        (b"hello, world", r"image: not a supported image .* accepted: JPEG, PNG, BMP, WebP or TIFF"),
        (PHOTO.read_bytes()[:5000], r"image: JPEG is truncated"),
        (PHOTO.read_bytes()[:100], r"image: JPEG header is truncated or corrupt"),
        (png_claiming(0, 5), r"image: PNG header is truncated or corrupt"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "truncated-jpeg-header", "zero-width"],
)
def test_decode_image_refuses_bad_data_with_a_message_naming_it(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        decode_image(data)


def test_decode_image_refuses_truncated_png() -> None:
    data = encode(np.full((64, 64, 3), 7, np.uint8))
    with pytest.raises(InvalidInputError, match="PNG is truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.full((1, 1, 3), 9, np.uint8), np.full((1, 1, 3), 9, np.uint8)),
        (np.full((5, 7), 200, np.uint8), np.full((5, 7, 3), 200, np.uint8)),
        (np.dstack([np.full((4, 6, 3), 50, np.uint8), np.zeros((4, 6), np.uint8)]), np.full((4, 6, 3), 50, np.uint8)),
        (np.full((3, 3, 3), 65535, np.uint16), np.full((3, 3, 3), 255, np.uint8)),
    ],
    ids=["1x1", "grayscale", "rgba", "16-bit"],
)
def test_decode_image_returns_uint8_bgr_when_png_is_unusual_but_valid(image: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_image(encode(image)), expected)


def test_decode_image_applies_exif_orientation() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    decoded = decode_image(jpeg_with_exif_orientation(image, 6))  # 6: rotate 90° clockwise to display
    assert decoded.shape == (40, 20, 3)


def test_validate_frame_refuses_wrong_shape_dtype_and_size() -> None:
    with pytest.raises(InvalidInputError, match=r"frame: shape \[4, 4\]; accepted: \[H, W, 3\]"):
        validate_frame(np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidInputError, match="frame: dtype float32"):
        validate_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InvalidInputError, match="too large"):
        validate_frame(np.zeros((10, 10, 3), np.uint8), max_pixels=99)


def test_letterbox_centres_image_and_pads_with_114():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, box = letterbox(image, (640, 640))
    assert canvas.shape == (640, 640, 3)
    assert (canvas[:157] == 114).all() and (canvas[481:] == 114).all()  # 320 rows of image, centred
    assert (canvas[160:477, :-3] == 7).all()  # bilinear blends the last source pixels with the pad (MMPose geometry)
    np.testing.assert_allclose(box.center, [100, 50])
    np.testing.assert_allclose(box.scale, [200, 200])


def test_unletterbox_inverts_the_letterbox_geometry():
    _, box = letterbox(np.zeros((429, 640, 3), np.uint8), (640, 640))
    image_points = np.array([[0.0, 0.0], [640.0, 429.0], [320.0, 214.5]])
    r = 1.0
    input_points = (image_points - box.center) * r + 320
    np.testing.assert_allclose(unletterbox(input_points, box), image_points, atol=1e-4)


def test_letterbox_round_trips_through_array_form():
    _, box = letterbox(np.zeros((333, 500, 3), np.uint8), (416, 416))
    again = Letterbox.from_array(box.as_array())
    np.testing.assert_array_equal(again.center, box.center)
    np.testing.assert_array_equal(again.scale, box.scale)
    assert again.input_size == (416, 416)


@pytest.mark.parametrize(
    ("height", "width", "translated"),
    [
        (480, 640, True),  # VGA: a whole-pixel shift
        (640, 480, True),
        (640, 640, True),
        (320, 640, True),
        (427, 640, True),  # COCO's common size: a half-pixel shift of the rows
        (640, 427, True),  # portrait: of the columns
        (1, 640, True),  # one row: both samples straddle an edge
        (639, 640, True),
        (479, 639, False),  # scale != 1: warpAffine
        (333, 500, False),
    ],
)
def test_letterbox_translations_are_bit_identical_to_warp_affine(height, width, translated) -> None:
    from rtmo.runtime.preprocess import _translated, _warp_matrix

    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[:4] = 255  # saturated and extreme values at an edge, where the padding is averaged in
    image[-4:] = 0
    canvas, box = letterbox(image, (640, 640))
    matrix = _warp_matrix(box.center, box.scale, (640, 640))
    warped = cv2.warpAffine(image, matrix, (640, 640), flags=cv2.INTER_LINEAR, borderValue=(114, 114, 114))
    assert _translated(image, matrix, np.empty((640, 640, 3), np.uint8)) == translated
    np.testing.assert_array_equal(canvas, warped)
    # into a reused batch row holding another image's pixels: every pixel is written
    row = np.random.default_rng(1).integers(0, 256, (640, 640, 3), dtype=np.uint8)
    assert letterbox(image, (640, 640), out=row)[0] is row
    np.testing.assert_array_equal(row, warped)


@pytest.mark.parametrize("shift", [(0.5, 0.5), (-1.0, 0.0), (0.25, 0.0), (600.5, 0.0)])
def test_translations_it_does_not_compute_are_left_to_warp_affine(shift) -> None:
    from rtmo.runtime.preprocess import _translated

    matrix = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    canvas = np.full((640, 640, 3), 7, np.uint8)
    assert not _translated(np.zeros((100, 100, 3), np.uint8), matrix, canvas)
    assert (canvas == 7).all()  # nothing written


def test_a_batch_is_letterboxed_in_place_as_each_image_alone() -> None:
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((480, 640, 3), (333, 500, 3), (640, 427, 3))]
    canvases, boxes = letterbox_batch(pictures, (640, 640))
    for picture, canvas, box in zip(pictures, canvases, boxes):
        alone, alone_box = letterbox(picture, (640, 640))
        np.testing.assert_array_equal(canvas, alone)
        np.testing.assert_array_equal(box, alone_box.as_array())


def test_letterbox_refuses_an_output_array_it_cannot_fill() -> None:
    with pytest.raises(ValueError, match=r"out: uint8 \(640, 640, 4\); accepted: C-contiguous uint8 \(640, 640, 3\)"):
        letterbox(np.zeros((480, 640, 3), np.uint8), (640, 640), out=np.empty((640, 640, 4), np.uint8))
