"""MMPose's ``Mosaic``: four images around a random centre on a 2·S × 2·S canvas, their people moved along.

The draw (the centre) is separate from the apply, so a parity test can give MMPose the same centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtmo.train.augment import Targets, clip_boxes, concat_targets, hide_outside

__all__ = ["MosaicDraw", "apply_mosaic", "draw_mosaic"]

MOSAIC_PAD = 114
CENTRE_RANGE = (0.5, 1.5)  # the centre as a fraction of S, on each axis


@dataclass(frozen=True)
class MosaicDraw:
    """Where the four images meet on the canvas, (x, y) pixels; and which dataset images join the first."""

    centre_xy: tuple[int, int]
    partners: tuple[int, int, int]

    def __post_init__(self) -> None:
        if len(self.partners) != 3:
            raise ValueError(f"MosaicDraw.partners: got {self.partners}; accepted: three dataset indices")


def draw_mosaic(rng: np.random.Generator, *, dataset_size: int, side: int) -> MosaicDraw:
    """Three partner images (uniform over the dataset, with replacement, as MMPose draws them) and the centre
    (uniform in [0.5 S, 1.5 S) per axis, truncated to int)."""
    partners = tuple(int(i) for i in rng.integers(0, dataset_size, 3))
    cx, cy = (int(rng.uniform(*CENTRE_RANGE) * side) for _ in range(2))
    return MosaicDraw(centre_xy=(cx, cy), partners=partners)


def apply_mosaic(
    images: list[np.ndarray], targets: list[Targets], draw: MosaicDraw, *, side: int
) -> tuple[np.ndarray, Targets]:
    """Paste images 0..3 (each fitted into S × S, aspect kept) into the top-left, top-right, bottom-left and
    bottom-right quadrants around the centre, cropping what overhangs; boxes are clipped to the canvas and
    keypoints off it marked invisible (not moved)."""
    if len(images) != 4 or len(targets) != 4:
        raise ValueError(f"apply_mosaic: got {len(images)} images and {len(targets)} targets; accepted: 4 of each")
    canvas = np.full((2 * side, 2 * side, 3), MOSAIC_PAD, images[0].dtype)
    placed = []
    for quadrant, (image, arrays) in enumerate(zip(images, targets)):
        h, w = image.shape[:2]
        ratio = min(side / h, side / w)
        image = cv2.resize(image, (int(w * ratio), int(h * ratio)), interpolation=cv2.INTER_LINEAR)
        paste, crop = _quadrant_boxes(quadrant, draw.centre_xy, image.shape[1], image.shape[0], side)
        canvas[paste[1] : paste[3], paste[0] : paste[2]] = image[crop[1] : crop[3], crop[0] : crop[2]]
        shift = np.array([paste[0] - crop[0], paste[1] - crop[1]], np.float32)
        placed.append(_moved(arrays, ratio, shift))
    merged = concat_targets(placed)
    bboxes = clip_boxes(merged["bboxes"], width=2 * side, height=2 * side)
    visible = hide_outside(merged["keypoints"], merged["keypoints_visible"], width=2 * side, height=2 * side)
    return canvas, dict(merged, bboxes=bboxes, keypoints_visible=visible)


def _moved(arrays: Targets, ratio: float, shift: np.ndarray) -> Targets:
    bboxes = arrays["bboxes"] * np.float32(ratio) + np.tile(shift, 2)
    keypoints = arrays["keypoints"] * np.float32(ratio) + shift
    return dict(arrays, bboxes=bboxes, keypoints=keypoints, areas=arrays["areas"] * np.float32(ratio**2))


def _quadrant_boxes(
    quadrant: int, centre: tuple[int, int], w: int, h: int, side: int
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(paste box on the canvas, crop box in the resized image), both x1 y1 x2 y2: the image's corner that
    touches the centre stays whole, the far sides are cut at the canvas border."""
    cx, cy = centre
    limit = 2 * side
    left = quadrant in (0, 2)
    top = quadrant in (0, 1)
    x1, x2 = (max(cx - w, 0), cx) if left else (cx, min(cx + w, limit))
    y1, y2 = (max(cy - h, 0), cy) if top else (cy, min(cy + h, limit))
    crop_x = (w - (x2 - x1), w) if left else (0, min(w, x2 - x1))
    crop_y = (h - (y2 - y1), h) if top else (0, min(h, y2 - y1))
    return (x1, y1, x2, y2), (crop_x[0], crop_y[0], crop_x[1], crop_y[1])
