"""SimOTA assignment of priors to people, as RTMO configures MMPose's ``SimOTAAssigner``.

Candidates are priors inside a person's box or within ``center_radius`` strides of the mean of its labelled
keypoints; each person then takes its ``k`` cheapest candidates, ``k`` being the sum of its ``candidate_topk``
best OKS with the predicted (proxy) poses. A prior claimed by several people goes to the cheapest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtmo.train.geometry import box_iou, pose_oks
from rtmo.train.targets import ImageTargets

__all__ = ["Assignment", "SimOTAAssigner"]

_INF = 100000000.0
_EPS = 1.0e-7


@dataclass(frozen=True)
class Assignment:
    """Per prior: ``gt_index`` (A,) the 0-based person it is assigned to, -1 for background; ``overlap`` (A,) the
    OKS of its predicted pose with that person (the dynamic-k indicator), meaningless for background."""

    gt_index: torch.Tensor
    overlap: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        """Indices of the assigned priors, ascending."""
        return torch.nonzero(self.gt_index >= 0, as_tuple=False).squeeze(-1)


@dataclass(frozen=True)
class SimOTAAssigner:
    """RTMO's settings: OKS decides k, keypoint centres, radius 2.5 strides, top-10, costs IoU 3 / cls 1 / OKS 3.

    Args:
        sigmas: (K,) OKS sigmas of the keypoint set.
    """

    sigmas: torch.Tensor
    center_radius: float = 2.5
    candidate_topk: int = 10
    iou_weight: float = 3.0
    cls_weight: float = 1.0
    oks_weight: float = 3.0

    def __post_init__(self) -> None:
        if self.center_radius <= 0:
            raise ValueError(f"SimOTAAssigner.center_radius: got {self.center_radius}; accepted: > 0")
        if self.candidate_topk < 1:
            raise ValueError(f"SimOTAAssigner.candidate_topk: got {self.candidate_topk}; accepted: an integer >= 1")

    @torch.no_grad()
    def assign(
        self,
        *,
        priors: torch.Tensor,
        scores: torch.Tensor,
        boxes: torch.Tensor,
        keypoints: torch.Tensor,
        targets: ImageTargets,
    ) -> Assignment:
        """Assign the A priors of one image.

        Args:
            priors: (A, 4) ``(x, y, stride_x, stride_y)``.
            scores: (A, C) predicted class probabilities (square root of cls × objectness in MMPose; RTMO has no
                objectness, so sqrt(sigmoid(cls))).
            boxes: (A, 4) decoded xyxy boxes.
            keypoints: (A, K, 2) decoded proxy keypoints.
            targets: the image's people.
        """
        num_priors = priors.shape[0]
        gt_index = torch.full((num_priors,), -1, dtype=torch.long, device=priors.device)
        # float32 whatever the model's dtype, as MMPose keeps ``max_overlaps``
        overlap = torch.zeros((num_priors,), dtype=torch.float32, device=priors.device)
        if len(targets) == 0 or num_priors == 0:
            return Assignment(gt_index, overlap)
        candidate, in_box_and_center = self._candidates(priors, targets)
        if not candidate.any():
            return Assignment(gt_index, overlap)

        cost = (~in_box_and_center) * _INF
        ious = box_iou(boxes[candidate], targets.bboxes)
        cost = cost + -torch.log(ious + _EPS) * self.iou_weight
        oks = pose_oks(
            keypoints[candidate].unsqueeze(1),
            targets.keypoints.unsqueeze(0),
            targets.keypoints_visible.unsqueeze(0),
            targets.areas.unsqueeze(0),
            self.sigmas.to(keypoints),
        )
        cost = cost + -torch.log(oks + _EPS) * self.oks_weight
        candidate_scores = scores[candidate].unsqueeze(1).expand(-1, len(targets), -1).float()
        onehot = F.one_hot(targets.labels, scores.shape[-1]).float().unsqueeze(0).expand_as(candidate_scores)
        cls_cost = F.binary_cross_entropy(candidate_scores, onehot, reduction="none").sum(-1).to(scores.dtype)
        cost = cost + cls_cost * self.cls_weight

        matched, matched_gt, matched_oks = self._dynamic_k(cost, oks)
        candidate_index = torch.nonzero(candidate, as_tuple=False).squeeze(-1)[matched]
        gt_index[candidate_index] = matched_gt
        overlap[candidate_index] = matched_oks.to(overlap)
        return Assignment(gt_index, overlap)

    def _candidates(self, priors: torch.Tensor, targets: ImageTargets) -> tuple[torch.Tensor, torch.Tensor]:
        """(A,) priors inside some box or some centre area; (candidates, G) inside both of one person."""
        x, y = priors[:, 0:1], priors[:, 1:2]
        boxes = targets.bboxes
        in_box = torch.stack((x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y)).amin(0) > 0

        centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        visible = targets.keypoints_visible
        # the mean of the labelled keypoints, where a person has any
        keypoint_centers = (targets.keypoints * visible.unsqueeze(-1)).sum(-2) / visible.sum(-1, keepdim=True).clip(
            min=0
        )
        labelled = visible.sum(-1) > 0
        centers = torch.where(labelled[:, None], keypoint_centers.to(centers), centers)
        radius_x = self.center_radius * priors[:, 2:3]
        radius_y = self.center_radius * priors[:, 3:4]
        cx, cy = centers[:, 0], centers[:, 1]
        in_center = (
            torch.stack((x - (cx - radius_x), y - (cy - radius_y), (cx + radius_x) - x, (cy + radius_y) - y)).amin(0)
            > 0
        )
        candidate = in_box.any(1) | in_center.any(1)
        return candidate, in_box[candidate] & in_center[candidate]

    def _dynamic_k(self, cost: torch.Tensor, oks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Matched candidates (mask), their person and OKS."""
        matching = torch.zeros_like(cost, dtype=torch.uint8)
        top = min(self.candidate_topk, oks.shape[0])
        dynamic_ks = torch.clamp(torch.topk(oks, top, dim=0).values.sum(0).int(), min=1)
        for gt in range(cost.shape[1]):
            _, chosen = torch.topk(cost[:, gt], k=int(dynamic_ks[gt]), largest=False)
            matching[chosen, gt] = 1
        contested = matching.sum(1) > 1
        if contested.any():
            cheapest = cost[contested].argmin(1)
            matching[contested] = 0
            matching[contested, cheapest] = 1
        matched = matching.sum(1) > 0
        matched_gt = matching[matched].argmax(1)
        matched_oks = (matching * oks).sum(1)[matched]
        return matched, matched_gt, matched_oks
