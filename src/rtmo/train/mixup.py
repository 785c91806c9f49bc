"""MMPose's ``YOLOXMixUp``: a second dataset image, fitted into S × S at the top left, rescaled by a random
jitter, maybe mirrored, cropped at a random offset and averaged 50/50 with the input; its people join.

The draw is separate from the apply, so a parity test can give MMPose the same draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtmo.train.augment import Targets, clip_boxes, concat_targets, hide_outside

__all__ = ["MixUpDraw", "apply_mixup", "draw_mixup"]

MIXUP_PAD = 114.0
RATIO_RANGE = (0.8, 1.6)
FLIP_PROB = 0.5


@dataclass(frozen=True)
class MixUpDraw:
    """The partner's dataset index, its scale jitter, whether it is mirrored and the crop offset (pixels)."""

    partner: int
    jitter: float
    flip: bool
    offset_xy: tuple[int, int]

    def __post_init__(self) -> None:
        if not self.jitter > 0:
            raise ValueError(f"MixUpDraw.jitter: got {self.jitter}; accepted: a number > 0")
        if min(self.offset_xy) < 0:
            raise ValueError(f"MixUpDraw.offset_xy: got {self.offset_xy}; accepted: non-negative pixels")


def draw_mixup(rng: np.random.Generator, *, dataset_size: int, side: int, input_hw: tuple[int, int]) -> MixUpDraw:
    """Partner uniform over the dataset, jitter uniform in 0.8–1.6, mirrored with probability 1/2, and a crop
    offset uniform over the positions where the input's ``input_hw`` window fits the jittered canvas."""
    partner = int(rng.integers(0, dataset_size))
    jitter = float(rng.uniform(*RATIO_RANGE))
    flip = bool(rng.uniform(0, 1) > FLIP_PROB)
    jittered = int(side * jitter)
    h, w = input_hw
    dy = int(rng.integers(0, max(0, max(jittered, h) - h) + 1))
    dx = int(rng.integers(0, max(0, max(jittered, w) - w) + 1))
    return MixUpDraw(partner=partner, jitter=jitter, flip=flip, offset_xy=(dx, dy))


def apply_mixup(
    image: np.ndarray,
    targets: Targets,
    partner_image: np.ndarray,
    partner_targets: Targets,
    draw: MixUpDraw,
    *,
    side: int,
    flip_indices: np.ndarray,
) -> tuple[np.ndarray, Targets]:
    """The input averaged with the drawn view of the partner; the partner's people moved, clipped to its
    jittered canvas, mirrored if drawn, and cropped along; then everyone clipped to the input. A partner
    without people leaves the input as it is (as MMPose's does)."""
    if len(partner_targets["keypoints"]) == 0:
        return image, targets
    h, w = image.shape[:2]
    ratio = min(side / partner_image.shape[0], side / partner_image.shape[1])
    fitted = cv2.resize(
        partner_image,
        (int(partner_image.shape[1] * ratio), int(partner_image.shape[0] * ratio)),
        interpolation=cv2.INTER_LINEAR,
    )
    # float64 as MMPose's canvas is (uint8 ones times a float pad): the resize below rounds differently in uint8
    canvas = np.full((side, side, 3), MIXUP_PAD)
    canvas[: fitted.shape[0], : fitted.shape[1]] = fitted
    jittered = int(side * draw.jitter)
    canvas = cv2.resize(canvas, (jittered, jittered), interpolation=cv2.INTER_LINEAR)
    if draw.flip:
        canvas = canvas[:, ::-1]
    padded = np.full((max(jittered, h), max(jittered, w), 3), int(MIXUP_PAD), np.uint8)
    padded[:jittered, :jittered] = canvas  # float to uint8: truncated, as MMPose's assignment does
    dx, dy = draw.offset_xy
    mixed = (0.5 * image + 0.5 * padded[dy : dy + h, dx : dx + w]).astype(np.uint8)

    scale = ratio * draw.jitter
    boxes = clip_boxes(partner_targets["bboxes"] * np.float32(scale), width=jittered, height=jittered)
    keypoints = partner_targets["keypoints"] * np.float32(scale)
    visible = hide_outside(keypoints, partner_targets["keypoints_visible"], width=jittered, height=jittered)
    if draw.flip:
        boxes = np.stack([jittered - 1 - boxes[:, 2], boxes[:, 1], jittered - 1 - boxes[:, 0], boxes[:, 3]], 1)
        keypoints = keypoints[:, flip_indices].copy()
        keypoints[..., 0] = jittered - 1 - keypoints[..., 0]
        visible = visible[:, flip_indices]
    shift = np.array([dx, dy], np.float32)
    moved = dict(
        partner_targets,
        bboxes=boxes - np.tile(shift, 2),
        keypoints=keypoints - shift,
        keypoints_visible=visible,
        areas=partner_targets["areas"] * np.float32(scale**2),
    )
    merged = concat_targets([targets, moved])
    clipped = dict(
        merged,
        bboxes=clip_boxes(merged["bboxes"], width=w, height=h),
        keypoints_visible=hide_outside(merged["keypoints"], merged["keypoints_visible"], width=w, height=h),
    )
    return mixed, clipped
