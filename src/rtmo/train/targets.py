"""The ground truth of one training image, in network-input pixels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageTargets"]


@dataclass(frozen=True)
class ImageTargets:
    """The annotated people of one image (G of them, K keypoints each), as MMPose's ``gt_instance_labels``.

    Args:
        bboxes: (G, 4) xyxy boxes.
        labels: (G,) int64 class indices (0 = person).
        keypoints: (G, K, 2) keypoint coordinates.
        keypoints_visible: (G, K) 1 for a labelled keypoint, 0 otherwise.
        areas: (G,) instance areas (pixels²), the OKS scale.
    """

    bboxes: torch.Tensor
    labels: torch.Tensor
    keypoints: torch.Tensor
    keypoints_visible: torch.Tensor
    areas: torch.Tensor

    def __post_init__(self) -> None:
        count = self.bboxes.shape[0]
        shapes = {
            "bboxes": (self.bboxes, (count, 4)),
            "labels": (self.labels, (count,)),
            "keypoints": (self.keypoints, (count, self.keypoints.shape[1] if self.keypoints.ndim == 3 else -1, 2)),
            "keypoints_visible": (self.keypoints_visible, (count, self.keypoints.shape[1])),
            "areas": (self.areas, (count,)),
        }
        for name, (tensor, shape) in shapes.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"ImageTargets.{name}: shape {tuple(tensor.shape)}; expected {shape} (G={count})")

    def __len__(self) -> int:
        return int(self.bboxes.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype) -> ImageTargets:
        """Floating-point fields in ``dtype`` on ``device``; labels stay int64."""
        return ImageTargets(
            bboxes=self.bboxes.to(device, dtype),
            labels=self.labels.to(device, torch.int64),
            keypoints=self.keypoints.to(device, dtype),
            keypoints_visible=self.keypoints_visible.to(device, dtype),
            areas=self.areas.to(device, dtype),
        )
