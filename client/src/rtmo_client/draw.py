"""Draw results over an image: skeleton lines, keypoints, person boxes and scores (needs OpenCV, the ``cli`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rtmo_client._optional import require_cv2
from rtmo_client.results import Person, PoseResult

__all__ = ["draw"]

_BOX_COLOR = (0, 200, 255)  # BGR
_LIMB_COLOR = (255, 160, 0)
_POINT_COLOR = (60, 60, 255)


def draw(
    image: npt.NDArray[np.uint8],
    result: PoseResult,
    *,
    skeleton: Sequence[tuple[int, int]] = (),
    keypoint_threshold: float = 0.3,
    boxes: bool = True,
    scores: bool = True,
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with ``result`` drawn on it.

    Args:
        image: The image the result belongs to, ``uint8`` ``(H, W, 3)`` in the channel order you want back (the
            colours are BGR).
        result: What :meth:`rtmo_client.Client.estimate` returned for it.
        skeleton: Keypoint index pairs to join, from ``client.model_info().skeleton``; empty draws points only.
        keypoint_threshold: Keypoints (and limbs) scoring below this are left out.
        boxes: Draw person boxes.
        scores: Write each person's score above its box.

    Returns:
        The drawn copy; ``image`` is not modified.

    Raises:
        ImportError: OpenCV is not installed.
        ValueError: ``image`` is not ``uint8`` ``(H, W, 3)``.
    """
    cv2 = require_cv2("drawing")
    canvas = checked_canvas(image)
    thickness = line_thickness(canvas)
    for person in result.people:
        draw_person(
            cv2,
            canvas,
            person,
            skeleton=skeleton,
            keypoint_threshold=keypoint_threshold,
            thickness=thickness,
            colors=(_LIMB_COLOR, _POINT_COLOR, _BOX_COLOR if boxes else None),
            label=f"{person.score:.2f}" if scores else None,
        )
    return canvas


# -- shared with rtmo_client.draw_tracks --------------------------------------------------------------------------

Color = tuple[int, int, int]


def checked_canvas(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A contiguous copy of ``image`` to draw on; ``ValueError`` unless it is ``uint8`` ``(H, W, 3)``."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: dtype {image.dtype}, shape {tuple(image.shape)}; accepted: uint8 (H, W, 3)")
    return np.ascontiguousarray(image).copy()


def line_thickness(canvas: npt.NDArray[np.uint8]) -> int:
    return max(1, round(max(canvas.shape[:2]) / 400))


def draw_person(
    cv2: Any,
    canvas: npt.NDArray[np.uint8],
    person: Person,
    *,
    skeleton: Sequence[tuple[int, int]],
    keypoint_threshold: float,
    thickness: int,
    colors: tuple[Color, Color, Color | None],
    label: str | None,
) -> None:
    """One person's limbs, keypoints, box (``colors``: limb, point, box or None for no box) and ``label`` above it."""
    limb_color, point_color, box_color = colors
    points = [(round(float(x)), round(float(y))) for x, y in person.keypoints]
    visible = [float(score) >= keypoint_threshold for score in person.keypoint_scores]
    for a, b in skeleton:
        if a < len(points) and b < len(points) and visible[a] and visible[b]:
            cv2.line(canvas, points[a], points[b], limb_color, thickness, cv2.LINE_AA)
    for point, shown in zip(points, visible):
        if shown:
            cv2.circle(canvas, point, thickness + 2, point_color, -1, cv2.LINE_AA)
    x1, y1, x2, y2 = (round(v) for v in person.box)
    if box_color is not None:
        cv2.rectangle(canvas, (x1, y1), (x2, y2), box_color, thickness)
    if label is not None:
        color = box_color if box_color is not None else point_color
        scale = 0.4 * thickness + 0.1
        cv2.putText(
            canvas, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA
        )
