"""The data preprocessor's batch side: pad to a multiple of 32 and MMPose's ``BatchSyncRandomResize``.

Every ``interval`` iterations a new input size is drawn (multiples of 32 within the range, the batch's aspect
kept); each batch is resized to the size drawn before it (the first one keeps its own), boxes, keypoints and
areas scaled along. One device: "sync" across ranks has nothing to do here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rtmo.train.targets import ImageTargets

__all__ = ["BatchSyncRandomResize", "SIZE_DIVISOR", "draw_input_size", "pad_batch", "resize_batch"]

SIZE_DIVISOR = 32
PAD_VALUE = 0.0  # PoseDataPreprocessor's pad_value


def pad_batch(canvases: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) float32 BGR 0–255 from (h, w, 3) uint8 canvases, padded at the bottom and right with 0 to the
    largest one rounded up to a multiple of 32 (``PoseDataPreprocessor(pad_size_divisor=32)``, mean 0, std 1)."""
    height = max(c.shape[0] for c in canvases)
    width = max(c.shape[1] for c in canvases)
    height, width = (-(-side // SIZE_DIVISOR) * SIZE_DIVISOR for side in (height, width))
    batch = torch.full((len(canvases), 3, height, width), PAD_VALUE)
    for i, canvas in enumerate(canvases):
        batch[i, :, : canvas.shape[0], : canvas.shape[1]] = torch.from_numpy(canvas).permute(2, 0, 1)
    return batch


def draw_input_size(
    rng: np.random.Generator, *, size_range: tuple[int, int], aspect_ratio: float = 1.0
) -> tuple[int, int]:
    """(height, width): height 32·n with n uniform over the range's multiples of 32 (ends included), width
    32·int(aspect·n)."""
    low, high = (round(side / SIZE_DIVISOR) for side in size_range)
    n = int(rng.integers(low, high + 1))
    return SIZE_DIVISOR * n, SIZE_DIVISOR * int(aspect_ratio * n)


def resize_batch(
    images: torch.Tensor, targets: list[ImageTargets], size_hw: tuple[int, int]
) -> tuple[torch.Tensor, list[ImageTargets]]:
    """The batch bilinearly resized to ``size_hw`` (no corner alignment) and its targets scaled along."""
    h, w = images.shape[-2:]
    scale_y, scale_x = size_hw[0] / h, size_hw[1] / w
    if scale_x == 1 and scale_y == 1:
        return images, targets
    resized = F.interpolate(images, size=size_hw, mode="bilinear", align_corners=False)
    xy = torch.tensor([scale_x, scale_y])
    scaled = [
        ImageTargets(
            bboxes=t.bboxes * xy.repeat(2).to(t.bboxes),
            labels=t.labels,
            keypoints=t.keypoints * xy.to(t.keypoints),
            keypoints_visible=t.keypoints_visible,
            areas=t.areas * (scale_x * scale_y),
        )
        for t in targets
    ]
    return resized, scaled


@dataclass
class BatchSyncRandomResize:
    """The random multi-scale input of the recipe (480–800 at 640, every iteration)."""

    size_range: tuple[int, int]
    interval: int = 1
    size_hw: tuple[int, int] | None = None  # the size the next batch gets; None: its own

    def __post_init__(self) -> None:
        low, high = self.size_range
        if not SIZE_DIVISOR <= low <= high:
            raise ValueError(
                f"BatchSyncRandomResize.size_range: got {self.size_range}; accepted: (low, high), 32 <= low <= high"
            )
        if self.interval < 1:
            raise ValueError(f"BatchSyncRandomResize.interval: got {self.interval}; accepted: an integer >= 1")

    def __call__(
        self, images: torch.Tensor, targets: list[ImageTargets], *, iteration: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, list[ImageTargets]]:
        h, w = images.shape[-2:]
        images, targets = resize_batch(images, targets, self.size_hw or (h, w))
        if (iteration + 1) % self.interval == 0:
            self.size_hw = draw_input_size(rng, size_range=self.size_range, aspect_ratio=w / h)
        return images, targets
