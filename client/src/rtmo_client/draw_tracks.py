"""Draw tracked people: each track in its own colour, the same in every frame, with its id (needs OpenCV)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from rtmo_client._optional import require_cv2
from rtmo_client.draw import checked_canvas, draw_person, line_thickness
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
    canvas = checked_canvas(image)
    thickness = line_thickness(canvas)
    for person in result.people:
        color = track_color(person.track_id)
        label = f"#{person.track_id}" if person.track_id is not None else None
        draw_person(
            cv2,
            canvas,
            person,
            skeleton=skeleton,
            keypoint_threshold=keypoint_threshold,
            thickness=thickness,
            colors=(color, color, color),
            label=label,
        )
    return canvas
