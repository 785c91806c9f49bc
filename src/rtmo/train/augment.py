"""The single-image augmentations of RTMO's training pipeline, each MMPose's given the same draw, and the
helpers every transform shares on a ``Targets`` dict (the ``ImageTargets`` fields as numpy arrays)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "Targets",
    "apply_hsv",
    "clip_boxes",
    "concat_targets",
    "filter_annotations",
    "flip_horizontally",
    "hide_outside",
    "hsv_gains",
]

# bboxes (G, 4) xyxy, labels (G,), keypoints (G, K, 2), keypoints_visible (G, K), areas (G,)
Targets = dict[str, np.ndarray]
TARGET_KEYS = ("bboxes", "labels", "keypoints", "keypoints_visible", "areas")
MIN_BOX_SIDE_PX = 1.0  # FilterAnnotations' min_gt_bbox_wh
MIN_VISIBLE_KEYPOINTS = 1  # FilterAnnotations' min_kpt_vis


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


def flip_horizontally(canvas: np.ndarray, targets: Targets, flip_indices: np.ndarray) -> tuple[np.ndarray, Targets]:
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


def concat_targets(parts: list[Targets]) -> Targets:
    """The people of several images, in one image's coordinates already, as one set."""
    return {key: np.concatenate([part[key] for part in parts]) for key in TARGET_KEYS}


def clip_boxes(boxes: np.ndarray, *, width: float, height: float) -> np.ndarray:
    """Box corners clamped into [0, width] × [0, height] (``bbox_clip_border``)."""
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    return clipped


def hide_outside(keypoints: np.ndarray, visible: np.ndarray, *, width: float, height: float) -> np.ndarray:
    """The visibility with keypoints outside [0, width] × [0, height] set to 0 (``keypoint_clip_border``: the
    points themselves stay where they are)."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    outside = (x > width) | (x < 0) | (y > height) | (y < 0)
    return np.where(outside, 0, visible).astype(visible.dtype)


def filter_annotations(targets: Targets) -> Targets:
    """The people left after ``FilterAnnotations(by_kpt=True, by_box=True, keep_empty=False)``: boxes wider and
    taller than 1 px with at least one visible keypoint; possibly none."""
    boxes = targets["bboxes"]
    keep = (
        (boxes[:, 2] - boxes[:, 0] > MIN_BOX_SIDE_PX)
        & (boxes[:, 3] - boxes[:, 1] > MIN_BOX_SIDE_PX)
        & (targets["keypoints_visible"].sum(axis=1) >= MIN_VISIBLE_KEYPOINTS)
    )
    return {key: targets[key][keep] for key in TARGET_KEYS}
