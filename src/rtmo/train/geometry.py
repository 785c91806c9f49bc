"""Box IoU and pose OKS in the forms MMPose's training code computes them."""

from __future__ import annotations

import torch

__all__ = ["aligned_box_iou", "box_iou", "pose_oks"]

_IOU_EPS = 1e-6


def box_iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU (N, M) of xyxy boxes (N, 4) and (M, 4)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    lt = torch.max(boxes[:, None, :2], others[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], others[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = torch.max(area[:, None] + other_area[None, :] - overlap, union_floor(overlap))
    return overlap / union


def aligned_box_iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU (N,) of box i with box i, xyxy (N, 4) each."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    other_area = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    wh = (torch.min(boxes[:, 2:], others[:, 2:]) - torch.max(boxes[:, :2], others[:, :2])).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    union = torch.max(area + other_area - overlap, union_floor(overlap))
    return overlap / union


def union_floor(like: torch.Tensor) -> torch.Tensor:
    return like.new_tensor([_IOU_EPS])


def pose_oks(
    keypoints: torch.Tensor,
    targets: torch.Tensor,
    visible: torch.Tensor,
    areas: torch.Tensor,
    sigmas: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """OKS of predicted keypoints (..., K, 2) with targets (broadcastable), the mean over labelled keypoints.

    ``areas`` broadcasts against the result (one value per target instance); ``sigmas`` is (K,).
    """
    dist = torch.norm(keypoints - targets, dim=-1)
    areas = areas.reshape(*((1,) * (dist.ndim - 2)), -1, 1)
    dist = dist / areas.pow(0.5).clip(min=eps)
    dist = dist / (sigmas.reshape(*((1,) * (dist.ndim - 1)), -1) * 2)
    weights = visible / visible.sum(dim=-1, keepdim=True).clip(min=eps)
    return (torch.exp(-dist.pow(2) / 2) * weights).sum(dim=-1)
