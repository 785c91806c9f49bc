"""Draw tracked people: each track in its own colour, the same in every frame, with its id (needs OpenCV)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rtmo_client._optional import require_cv2
from rtmo_client.tracking import TrackedResult

__all__ = ["draw_tracks", "track_color"]

_UNTRACKED = (160, 160, 160)  # BGR grey: people on no confirmed track yet
_GOLDEN = 0.618033988749895  # successive ids get far-apart hues


def track_color(track_id: int | None) -> tuple[int, int, int]:
    """The BGR colour of ``track_id``: a function of the id alone, so stable across frames and runs."""
    if track_id is None:
        return _UNTRACKED
    red, green, blue = colorsys.hsv_to_rgb((track_id * _GOLDEN) % 1.0, 0.85, 0.95)
    return round(blue * 255), round(green * 255), round(red * 255)


def draw_tracks(
    image: npt.NDArray[np.uint8],
    result: TrackedResult,
    *,
    skeleton: Sequence[tuple[int, int]] = (),
    keypoint_threshold: float = 0.3,
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` (BGR ``uint8`` ``(H, W, 3)``) with each person's box, skeleton and ``#id`` drawn in
    the colour of its track (grey for people on no track yet).

    Raises:
        ImportError: OpenCV is not installed.
        ValueError: ``image`` is not ``uint8`` ``(H, W, 3)``.
    """
    cv2 = require_cv2("drawing")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: dtype {image.dtype}, shape {tuple(image.shape)}; accepted: uint8 (H, W, 3)")
    canvas = np.ascontiguousarray(image).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for person in result.people:
        color = track_color(person.track_id)
        points = [(round(float(x)), round(float(y))) for x, y in person.keypoints]
        visible = [float(score) >= keypoint_threshold for score in person.keypoint_scores]
        for a, b in skeleton:
            if a < len(points) and b < len(points) and visible[a] and visible[b]:
                cv2.line(canvas, points[a], points[b], color, thickness, cv2.LINE_AA)
        for point, shown in zip(points, visible):
            if shown:
                cv2.circle(canvas, point, thickness + 1, color, -1, cv2.LINE_AA)
        x1, y1, x2, y2 = (round(v) for v in person.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        if person.track_id is not None:
            cv2.putText(
                canvas,
                f"#{person.track_id}",
                (x1, max(12, y1 - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5 * thickness + 0.1,
                color,
                thickness,
                cv2.LINE_AA,
            )
    return canvas
