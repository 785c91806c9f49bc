"""MMPose's ``BottomupRandomAffine`` in the two forms RTMO's recipe uses, onto an S × S input:

- stage 1 (``transform_mode='perspective'``, uniform draws): shift ±0.1 S, scale 0.75–1.0, rotation ±10°,
  shear ±2°, about the centre of the input's own square (MMPose's centre is (S/2, S/2) whatever the source size,
  so on the 2·S mosaic it is the top-left quarter that lands in view before the shift);
- stage 2 (every probability 0, ``scale_type='long'``): the image's long side fitted to S, centred.

Boxes are warped by their four corners and re-boxed, then clipped; keypoints warped, and those leaving the
input marked invisible; areas scale by the matrix's determinant. The draw is separate from the matrix and the
apply, so a parity test can give MMPose the same draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from rtmo.train.augment import Targets, clip_boxes, hide_outside

__all__ = ["AffineDraw", "draw_affine", "letterbox_matrix", "perspective_matrix", "warp"]

AFFINE_PAD = 114
SHIFT_FACTOR = 0.1  # of S
SCALE_RANGE = (0.75, 1.0)
ROTATION_DEG = 10.0
SHEAR_DEG = 2.0  # BottomupRandomAffine's default shear_factor, which the recipe keeps


@dataclass(frozen=True)
class AffineDraw:
    """One draw of the stage-1 perspective: shift (fractions of S), scale, rotation and shear (degrees)."""

    shift_xy: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    rotation_deg: float = 0.0
    shear_deg: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"AffineDraw.scale: got {self.scale}; accepted: a number > 0")
        for name in ("shift_xy", "shear_deg"):
            if len(getattr(self, name)) != 2:
                raise ValueError(f"AffineDraw.{name}: got {getattr(self, name)}; accepted: an (x, y) pair")


def draw_affine(rng: np.random.Generator) -> AffineDraw:
    """The recipe's draw: each parameter uniform within its range (``distribution='uniform'``)."""
    shift = rng.uniform(-1, 1, 2) * SHIFT_FACTOR
    scale = SCALE_RANGE[0] + (SCALE_RANGE[1] - SCALE_RANGE[0]) * (rng.uniform(-1, 1) + 1) / 2
    rotation = rng.uniform(-1, 1) * ROTATION_DEG
    shear = rng.uniform(-1, 1, 2) * SHEAR_DEG
    return AffineDraw(
        shift_xy=(float(shift[0]), float(shift[1])),
        scale=float(scale),
        rotation_deg=float(rotation),
        shear_deg=(float(shear[0]), float(shear[1])),
    )


def perspective_matrix(draw: AffineDraw, *, side: int) -> np.ndarray:
    """(3, 3) float32: move the point (S/2, S/2) to the origin, scale, rotate, shear, then move it to the centre
    plus the shift (``get_pers_warp_matrix``, composed in float32 in its order)."""
    centre = np.float32(side / 2)
    to_origin = np.array([[1, 0, -centre], [0, 1, -centre], [0, 0, 1]], np.float32)
    scaling = np.diag([draw.scale, draw.scale, 1]).astype(np.float32)
    angle = math.radians(draw.rotation_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], np.float32)
    shear_x, shear_y = (np.tan(math.radians(d)) for d in draw.shear_deg)
    shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]], np.float32)
    dx, dy = (s * side + centre for s in draw.shift_xy)
    back = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float32)
    return back @ shear @ rotation @ scaling @ to_origin


def letterbox_matrix(width: int, height: int, *, side: int) -> np.ndarray:
    """(2, 3): the stage-2 affine, the image's centre to the input's and its long side to S (``get_warp_matrix``
    from three point pairs, as MMPose solves it)."""
    long_side = max(width, height)
    centre = np.array([width / 2, height / 2], np.float32)
    src = np.stack([centre, centre + [-long_side / 2, 0], centre + [-long_side / 2, long_side / 2]])
    half = side / 2
    dst = np.array([[half, half], [0, half], [0, 2 * half]], np.float32)
    return cv2.getAffineTransform(src.astype(np.float32), dst)


def warp(image: np.ndarray, targets: Targets, matrix: np.ndarray, *, side: int) -> tuple[np.ndarray, Targets]:
    """The image and its people under ``matrix`` ((2, 3) affine or (3, 3) perspective), onto S × S, padded 114."""
    pad = (AFFINE_PAD,) * 3
    if matrix.shape == (3, 3):
        canvas = cv2.warpPerspective(image, matrix, (side, side), borderValue=pad)
        full = matrix
    else:
        canvas = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderValue=pad)
        full = np.concatenate([matrix, [[0.0, 0.0, 1.0]]]).astype(matrix.dtype)
    keypoints = _transform_points(targets["keypoints"], matrix)
    visible = hide_outside(keypoints, targets["keypoints_visible"], width=side, height=side)
    x1, y1, x2, y2 = (targets["bboxes"][:, i] for i in range(4))
    corners = np.stack([np.stack(c, axis=-1) for c in ((x1, y1), (x1, y2), (x2, y1), (x2, y2))], axis=1)
    corners = _transform_points(corners, matrix)
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    warped = dict(
        targets,
        bboxes=clip_boxes(boxes, width=side, height=side),
        keypoints=keypoints,
        keypoints_visible=visible,
        areas=(targets["areas"] * np.linalg.det(full)).astype(np.float32),
    )
    return canvas, warped


def _transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, M, 2) points under the matrix, divided by w for a perspective (``cv2.transform``, as MMPose does)."""
    if points.size == 0:
        return points.astype(np.float32)
    moved = cv2.transform(np.ascontiguousarray(points, np.float32), matrix)
    if moved.shape[-1] == 3:
        moved = moved[..., :2] / moved[..., 2:3]
    return moved
