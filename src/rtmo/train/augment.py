"""The augmentations of RTMO's training pipeline that ``rtmo train`` has, each MMPose's given the same draw."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["apply_hsv", "flip_horizontally", "hsv_gains"]


def hsv_gains(
    rng: np.random.Generator, *, hue_delta: int = 5, saturation_delta: int = 30, value_delta: int = 30
) -> np.ndarray:
    """One draw of ``YOLOXHSVRandomAug``'s gains: each channel, with probability 1/2, a uniform offset within
    its delta, truncated to int16."""
    gains = rng.uniform(-1, 1, 3) * [hue_delta, saturation_delta, value_delta]
    gains *= rng.integers(0, 2, 3)
    return gains.astype(np.int16)


def apply_hsv(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Shift a uint8 BGR image's hue (mod 180), saturation and value (clipped) by ``gains`` (``YOLOXHSVRandomAug``)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def flip_horizontally(
    canvas: np.ndarray, targets: dict[str, np.ndarray], flip_indices: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mirror an input and its targets: x → W − 1 − x for box corners and keypoints, left and right swapped
    (MMPose's ``RandomFlip``: ``flip_bbox`` and ``flip_keypoints``)."""
    width = canvas.shape[1]
    boxes = targets["bboxes"].copy()
    boxes[:, [0, 2]] = width - 1 - targets["bboxes"][:, [2, 0]]
    keypoints = targets["keypoints"][:, flip_indices].copy()
    keypoints[..., 0] = width - 1 - keypoints[..., 0]
    flipped = dict(
        targets, bboxes=boxes, keypoints=keypoints, keypoints_visible=targets["keypoints_visible"][:, flip_indices]
    )
    return np.ascontiguousarray(canvas[:, ::-1]), flipped
