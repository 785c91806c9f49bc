"""A synthetic video with known identities, for tracking tests and the tracking benchmark.

A camera pans over a photo: each frame is a square window (the network's input side, so the letterbox is the
identity) of the photo, moved by multiples of 32 px, the network's coarsest stride, for which a CNN is close to
translation-equivariant. So the people found on frame 0, moved by each frame's shift, are every frame's ground truth,
whatever the weights (the calibrated random ones of the tests included), except near the borders, where people
leave and enter. Identities are read off by box position, and scored with ``motmetrics`` (MOTA, IDF1, switches).

Three options make identities well-defined for the whole video (tests/test_tracking_video.py, whose model finds
its people at the stride-16 level):

- ``step_px``: the pan's step, 16 for the stride-16 level (a person then moves a quarter of a 64-pixel box a frame);
- ``wall_px``: the photo hangs as a poster on a plain wall (the letterbox's padding grey), at least ``wall_px``
  inside every frame, so nobody leaves or enters and no track is lost at a border;
- ``scale``: frames ``scale`` times larger, which the server letterboxes back by ``1 / scale``; a shift of
  ``step_px * scale`` frame pixels is one of ``step_px`` network pixels at the same sampling phase, so
  equivariance is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from rtmo.runtime.preprocess import PAD_VALUE

__all__ = ["SyntheticVideo", "identities", "mot_scores", "synthetic_video"]

STRIDE_PX = 32
# Steps, in strides, of a camera panning right and back, pausing a frame at each end.
_PAN = (0, 1, 2, 3, 4, 4, 3, 2, 1, 0)


@dataclass(frozen=True)
class SyntheticVideo:
    frames: list[np.ndarray]  # uint8 BGR, side x side
    shifts: list[tuple[int, int]]  # (dx, dy) by which the content of each frame moved since frame 0, pixels
    side: int  # of the frames, pixels

    def inner(self, boxes: np.ndarray, *, margin_px: int = STRIDE_PX) -> np.ndarray:
        """Which frame-0 ``boxes`` stay at least ``margin_px`` inside every frame (never near a border)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        keep = np.ones(len(boxes), bool)
        for dx, dy in self.shifts:
            moved = boxes + [dx, dy, dx, dy]
            keep &= (moved[:, :2] >= margin_px).all(axis=1) & (moved[:, 2:] <= self.side - margin_px).all(axis=1)
        return keep


def synthetic_video(
    photo: np.ndarray,
    *,
    frames: int = 30,
    side: int = 416,
    step_px: int = STRIDE_PX,
    wall_px: int = 0,
    scale: float = 1.0,
) -> SyntheticVideo:
    """``frames`` windows of ``side`` network pixels panning over ``photo`` by ``step_px`` (right 4 steps, pausing,
    and back), returned ``scale`` times larger (``side * scale`` pixels a side; ``shifts`` in those pixels).

    Without a wall the photo is resized to ``side`` + 4 steps by ``side``; with ``wall_px`` > 0 it is fitted
    (aspect kept) into the part of that canvas every window sees, ``wall_px`` from its edges, on a plain wall.
    """
    for name, value, low in (
        ("frames", frames, 1),
        ("side", side, STRIDE_PX),
        ("step_px", step_px, 1),
        ("wall_px", wall_px, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: got {value!r}; accepted: an integer >= {low}")
    step = step_px * scale
    if not scale >= 1.0 or step != round(step) or side * scale != round(side * scale):
        raise ValueError(f"scale: got {scale!r}; accepted: >= 1, with step_px * scale and side * scale whole pixels")
    pan_px = max(_PAN) * step_px
    seen_w, seen_h = side - pan_px - 2 * wall_px, side - 2 * wall_px  # canvas part inside every window
    if wall_px and min(seen_w, seen_h) < STRIDE_PX:
        raise ValueError(
            f"wall_px: got {wall_px}; accepted: at most {(side - pan_px - STRIDE_PX) // 2} for side {side}"
        )
    wide = _canvas(photo, (side + pan_px, side), wall_px=wall_px, seen=(seen_w, seen_h))
    out, shifts = [], []
    for index in range(frames):
        x = step_px * _PAN[index % len(_PAN)]
        window = wide[:, x : x + side]
        if scale != 1.0:
            big = round(side * scale)
            window = cv2.resize(window, (big, big), interpolation=cv2.INTER_LINEAR)
        out.append(np.ascontiguousarray(window))
        shifts.append((-round(x * scale), 0))
    return SyntheticVideo(out, shifts, round(side * scale))


def _canvas(photo: np.ndarray, size: tuple[int, int], *, wall_px: int, seen: tuple[int, int]) -> np.ndarray:
    if not wall_px:
        return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    height, width = photo.shape[:2]
    fit = min(seen[0] / width, seen[1] / height)
    poster = cv2.resize(photo, (round(width * fit), round(height * fit)), interpolation=cv2.INTER_AREA)
    canvas = np.full((size[1], size[0], 3), PAD_VALUE, np.uint8)
    # centred in the part every window sees: from the pan (the canvas's extra width) and the wall on
    x = size[0] - size[1] + wall_px + (seen[0] - poster.shape[1]) // 2
    y = wall_px + (seen[1] - poster.shape[0]) // 2
    canvas[y : y + poster.shape[0], x : x + poster.shape[1]] = poster
    return canvas


def identities(
    boxes: np.ndarray, shift: tuple[int, int], truth: np.ndarray, *, tolerance_px: float = 4.0
) -> np.ndarray:
    """For each of ``boxes`` (N, 4) of a frame whose content moved by ``shift``, the index of the frame-0 ``truth``
    box it is (largest corner error at most ``tolerance_px``), or -1."""
    if not len(boxes) or not len(truth):
        return np.full(len(boxes), -1)
    moved = np.asarray(truth, np.float64) + [shift[0], shift[1], shift[0], shift[1]]
    error = np.abs(np.asarray(boxes, np.float64)[:, None] - moved[None]).max(axis=2)
    best = error.argmin(axis=1)
    return np.where(error[np.arange(len(boxes)), best] <= tolerance_px, best, -1)


def mot_scores(
    truth: np.ndarray,
    shifts: Sequence[tuple[int, int]],
    tracked: Sequence[tuple[np.ndarray, Sequence[int | None]]],
) -> dict[str, float]:
    """MOTA, IDF1 and identity switches (``motmetrics``, IoU distance, match below 0.5) of ``tracked`` frames,
    each ``(boxes (N, 4), track ids (None: no track))``, against ``truth`` (frame-0 boxes) moved by ``shifts``."""
    import motmetrics as mm

    accumulator = mm.MOTAccumulator(auto_id=True)
    for (dx, dy), (boxes, ids) in zip(shifts, tracked):
        gt = _xywh(truth) + [dx, dy, 0, 0]
        kept = [i for i, track in enumerate(ids) if track is not None]
        hyp = _xywh(np.asarray(boxes, np.float64).reshape(-1, 4)[kept])
        distances = mm.distances.iou_matrix(gt, hyp, max_iou=0.5)
        accumulator.update(list(range(len(gt))), [ids[i] for i in kept], distances)
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"], name="video")
    row = summary.loc["video"]
    return {"mota": float(row["mota"]), "idf1": float(row["idf1"]), "id_switches": int(row["num_switches"])}


def _xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
