"""The loss terms of RTMO's head, each the function MMPose's loss module of the same role computes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rtmo.train.geometry import aligned_box_iou

__all__ = ["bbox_l1_loss", "iou_square_loss", "mle_cc_loss", "oks_loss", "varifocal_loss", "visibility_bce_loss"]


def varifocal_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *, alpha: float = 0.75, gamma: float = 2.0
) -> torch.Tensor:
    """Summed VariFocal loss (``VariFocalLoss``, use_target_weight): positives weighted by their target quality,
    negatives by ``alpha · p^gamma``; inf/nan elements count 0."""
    label = (targets > 1e-4).to(targets)
    focal = alpha * logits.sigmoid().pow(gamma) * (1 - label) + targets
    loss = F.binary_cross_entropy_with_logits(logits.clip(min=-10, max=10), targets, reduction="none") * focal
    loss = loss * weights
    loss = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss))
    return loss.sum()


def iou_square_loss(boxes: torch.Tensor, targets: torch.Tensor, *, eps: float = 1e-16) -> torch.Tensor:
    """Summed ``1 − IoU²`` of aligned xyxy boxes (``IoULoss(mode='square')``)."""
    ious = aligned_box_iou(boxes, targets).clamp(min=eps)
    return (1 - ious.pow(2)).sum()


def oks_loss(
    keypoints: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    areas: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Per-instance ``1 − OKS`` (N,), keypoint weights divided by K (``OKSLoss(reduction='none')``)."""
    dist = torch.norm(keypoints - targets, dim=-1)
    dist = dist / areas.pow(0.5).clip(min=eps).unsqueeze(-1)
    dist = dist / (sigmas.reshape(1, -1) * 2)
    oks = (torch.exp(-dist.pow(2) / 2) * (weights / weights.size(-1))).sum(dim=-1)
    return 1 - oks


def visibility_bce_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean weighted BCE of the keypoint visibility logits (``BCELoss``, use_target_weight)."""
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weights).mean()


def mle_cc_loss(
    heatmaps: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """Per-instance mean over keypoints (N,) of ``−log(p + 1e-4)``, ``p`` the product over axes of the predicted
    heatmap's mass under the target (``MLECCLoss``, use_target_weight); may be negative, as the targets are
    densities."""
    likelihood = 1.0
    for predicted, target in zip(heatmaps, targets):
        likelihood = likelihood * (predicted * target).sum(dim=-1)
    loss = -torch.log(likelihood + 1e-4)
    loss = torch.where(torch.isnan(loss), torch.zeros_like(loss), loss) * weights
    return loss.flatten(1).mean(dim=1)


def bbox_l1_loss(deltas: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed L1 of raw box deltas against their encoded targets (``L1Loss(reduction='sum')``)."""
    return F.l1_loss(deltas, targets, reduction="sum")
