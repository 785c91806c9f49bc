"""A synthetic video with known identities, for tracking tests and the tracking benchmark.

A camera pans over a photo: each frame is a square window (the network's input side, so the letterbox is the
identity) of the photo, moved by multiples of 32 px, the network's coarsest stride, for which a CNN is close to
translation-equivariant. So the people found on frame 0, moved by each frame's shift, are every frame's ground truth,
whatever the weights (the calibrated random ones of the tests included), except near the borders, where people
leave and enter. Identities are read off by box position, and scored with ``motmetrics`` (MOTA, IDF1, switches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SyntheticVideo", "identities", "mot_scores", "synthetic_video"]

STRIDE_PX = 32
# Steps, in strides, of a camera panning right and back, pausing a frame at each end.
_PAN = (0, 1, 2, 3, 4, 4, 3, 2, 1, 0)


@dataclass(frozen=True)
class SyntheticVideo:
    frames: list[np.ndarray]  # uint8 BGR, side x side
    shifts: list[tuple[int, int]]  # (dx, dy) by which the content of each frame moved since frame 0, pixels
    side: int

    def inner(self, boxes: np.ndarray, *, margin_px: int = STRIDE_PX) -> np.ndarray:
        """Which frame-0 ``boxes`` stay at least ``margin_px`` inside every frame (never near a border)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        keep = np.ones(len(boxes), bool)
        for dx, dy in self.shifts:
            moved = boxes + [dx, dy, dx, dy]
            keep &= (moved[:, :2] >= margin_px).all(axis=1) & (moved[:, 2:] <= self.side - margin_px).all(axis=1)
        return keep


def synthetic_video(photo: np.ndarray, *, frames: int = 30, side: int = 416) -> SyntheticVideo:
    """``frames`` windows of ``side`` pixels panning over ``photo`` (resized to ``side`` + 4 strides by ``side``)."""
    wide = cv2.resize(photo, (side + max(_PAN) * STRIDE_PX, side), interpolation=cv2.INTER_AREA)
    out, shifts = [], []
    for index in range(frames):
        x = STRIDE_PX * _PAN[index % len(_PAN)]
        out.append(np.ascontiguousarray(wide[:, x : x + side]))
        shifts.append((-x, 0))
    return SyntheticVideo(out, shifts, side)


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
