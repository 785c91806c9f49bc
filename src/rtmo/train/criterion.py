"""RTMO's training objective: the head's training forward, SimOTA targets and the weighted loss terms.

This is MMPose's ``RTMOHead.loss`` (with ``YOLOXPoseHead._get_targets``) for one process: the number of
positives is not all-reduced across GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from rtmo.candidates import flatten_levels, make_priors
from rtmo.train.assigner import Assignment, SimOTAAssigner
from rtmo.train.geometry import pose_oks
from rtmo.train.losses import (
    bbox_l1_loss,
    iou_square_loss,
    mle_cc_loss,
    oks_loss,
    varifocal_loss,
    visibility_bce_loss,
)
from rtmo.train.targets import ImageTargets

__all__ = ["LOSS_TERMS", "LossWeights", "Stage", "RTMOCriterion", "TrainingStep"]

# The loss terms, in the order MMPose reports them (``loss_bbox_aux`` only in the last stage).
LOSS_TERMS = ("loss_bbox", "loss_bbox_aux", "loss_vis", "loss_mle", "loss_oks", "loss_cls")


@dataclass(frozen=True)
class LossWeights:
    """MMPose's RTMO loss weights before the mode switch (``RTMOModeSwitchHook`` sets oks 10 and mle 5 after it)."""

    cls: float = 1.0
    bbox: float = 5.0
    oks: float = 30.0
    vis: float = 1.0
    mle: float = 1.0
    bbox_aux: float = 1.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value >= 0:
                raise ValueError(f"LossWeights.{name}: got {value}; accepted: a number >= 0")


@dataclass(frozen=True)
class Stage:
    """What the mode-switch hooks change: the proxy target and loss weights (``RTMOModeSwitchHook``) and the L1
    box auxiliary loss (``YOLOXPoseModeSwitchHook``, which also turns off Mosaic, MixUp and random affine)."""

    weights: LossWeights = field(default_factory=LossWeights)
    proxy_target_cc: bool = False
    use_aux_loss: bool = False

    def after_rtmo_switch(self) -> Stage:
        return replace(self, proxy_target_cc=True, weights=replace(self.weights, oks=10.0, mle=5.0))

    def after_yoloxpose_switch(self) -> Stage:
        return replace(self, use_aux_loss=True)


@dataclass
class TrainingStep:
    """One batch's losses: ``total`` (what is back-propagated), each weighted term, and the assignments."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    assignments: list[Assignment]
    num_positives: int


class RTMOCriterion(nn.Module):
    """Losses of an ``RTMO`` on a batch.

    Args:
        sigmas: (K,) OKS sigmas (assignment, OKS loss, proxy target).
        overlaps_power: exponent of the quality target of the classification loss (RTMO: 0.5).
    """

    def __init__(self, sigmas: torch.Tensor | list[float], *, overlaps_power: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("sigmas", torch.as_tensor(sigmas, dtype=torch.float64), persistent=False)
        self.overlaps_power = float(overlaps_power)

    def forward(
        self, model: nn.Module, images: torch.Tensor, targets: list[ImageTargets], *, stage: Stage
    ) -> TrainingStep:
        """Losses of ``model`` (in train mode) on (B, 3, H, W) BGR 0–255 ``images`` with one ``ImageTargets`` each."""
        if len(targets) != images.shape[0]:
            raise ValueError(f"targets: {len(targets)} ImageTargets for a batch of {images.shape[0]} images")
        head = model.head
        feats = model.neck(model.backbone(images))
        cls_scores, bbox_preds, kpt_offsets, kpt_vis, pose_vecs = head.head_module.forward_train(feats)
        dtype, device = cls_scores[0].dtype, cls_scores[0].device
        priors = self._priors(images, model.config.featmap_strides, dtype, device)
        num_keypoints = kpt_vis[0].shape[1]

        flat_cls = flatten_levels(cls_scores)
        flat_bbox = flatten_levels(bbox_preds)
        flat_vis = flatten_levels(kpt_vis)
        flat_pose = flatten_levels(pose_vecs)
        boxes = _decode_boxes(flat_bbox, priors)
        offsets = flatten_levels(kpt_offsets)
        keypoints = offsets.reshape(*offsets.shape[:-1], num_keypoints, 2) * priors[None, :, None, 2:3]
        keypoints = keypoints + priors[None, :, None, :2]

        targets = [t.to(device, dtype) for t in targets]
        sigmas = self.sigmas.to(device)
        assigner = SimOTAAssigner(sigmas=sigmas)
        scores = flat_cls.detach().clip(min=-1e4, max=1e4).sigmoid()
        scores = torch.where(torch.isnan(scores), torch.zeros_like(scores), scores).sqrt()
        assignments = [
            assigner.assign(
                priors=priors,
                scores=scores[i],
                boxes=boxes[i].detach(),
                keypoints=keypoints[i].detach(),
                targets=targets[i],
            )
            for i in range(len(targets))
        ]
        positive = torch.cat([a.gt_index >= 0 for a in assignments])
        gt_of = [a.gt_index[a.positive] for a in assignments]
        pos_priors = torch.cat([priors[a.positive] for a in assignments])

        def gathered(field_name: str) -> torch.Tensor:
            return torch.cat([getattr(t, field_name)[g] for t, g in zip(targets, gt_of)])

        bbox_targets = gathered("bboxes")
        kpt_targets = gathered("keypoints")
        vis_targets = gathered("keypoints_visible")
        pos_areas = gathered("areas")
        cls_targets = torch.cat([a.overlap[a.positive] for a in assignments]).unsqueeze(-1)
        num_positives = int(positive.sum())
        normaliser = max(float(num_positives), 1.0)

        weights = stage.weights
        terms: dict[str, torch.Tensor] = {}
        obj_targets = torch.zeros_like(flat_cls).reshape(-1, flat_cls.shape[-1])
        if num_positives > 0:
            pos_boxes = boxes.reshape(-1, 4)[positive]
            terms["loss_bbox"] = weights.bbox * iou_square_loss(pos_boxes, bbox_targets) / normaliser
            if stage.use_aux_loss:
                terms["loss_bbox_aux"] = (
                    weights.bbox_aux
                    * bbox_l1_loss(flat_bbox.reshape(-1, 4)[positive], _encode_boxes(bbox_targets, pos_priors))
                    / normaliser
                )
            pos_vis = flat_vis.reshape(-1, num_keypoints)[positive]
            terms["loss_vis"] = weights.vis * visibility_bce_loss(pos_vis, vis_targets, torch.ones_like(vis_targets))
            pos_keypoints = keypoints.reshape(-1, num_keypoints, 2)[positive]
            bbox_cs = torch.cat(
                (
                    (pos_boxes[:, 2:] + pos_boxes[:, :2]) * 0.5,
                    (pos_boxes[:, 2:] - pos_boxes[:, :2]) * model.config.bbox_padding,
                ),
                dim=1,
            )
            cc_keypoints = None
            if weights.mle > 0:
                pos_vecs = flat_pose.reshape(-1, flat_pose.shape[-1])[positive]
                with _running_statistics_if_single(head.dcc, rows=len(pos_vecs)):
                    cc_keypoints, heatmaps, spreads = head.dcc.forward_train(pos_vecs, bbox_cs, pos_priors[:, :2])
                target_maps = head.dcc.target_heatmaps(kpt_targets, bbox_cs, spreads, pos_areas)
                terms["loss_mle"] = weights.mle * mle_cc_loss(heatmaps, target_maps, vis_targets).mean()
            if stage.proxy_target_cc:
                if cc_keypoints is None:
                    raise ValueError("Stage.proxy_target_cc needs the DCC: LossWeights.mle must be > 0")
                with torch.no_grad():
                    diff_cc = torch.norm(cc_keypoints - kpt_targets, dim=-1)
                    diff_reg = torch.norm(pos_keypoints - kpt_targets, dim=-1)
                    reg_weights = vis_targets * (diff_reg > diff_cc).to(vis_targets)
                    cls_targets = pose_oks(cc_keypoints, kpt_targets, vis_targets, pos_areas, sigmas.to(dtype))
                    cls_targets = cls_targets.unsqueeze(1)
                terms["loss_oks"] = (
                    weights.oks
                    * oks_loss(pos_keypoints, cc_keypoints.detach(), reg_weights, pos_areas, sigmas.to(dtype)).mean()
                )
            else:
                terms["loss_oks"] = (
                    weights.oks * oks_loss(pos_keypoints, kpt_targets, vis_targets, pos_areas, sigmas.to(dtype)).mean()
                )
            obj_targets[positive] = cls_targets.pow(self.overlaps_power).detach().to(obj_targets)
        terms["loss_cls"] = (
            weights.cls
            * varifocal_loss(flat_cls.reshape(-1, flat_cls.shape[-1]), obj_targets, torch.ones_like(obj_targets))
            / normaliser
        )
        total = sum(terms.values())
        return TrainingStep(total=total, terms=terms, assignments=assignments, num_positives=num_positives)

    @staticmethod
    def _priors(
        images: torch.Tensor, strides: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        points, point_strides = make_priors((images.shape[3], images.shape[2]), strides)
        points_t = torch.from_numpy(points).to(device, dtype)
        strides_t = torch.from_numpy(point_strides).to(device, dtype)[:, None]
        return torch.cat((points_t, strides_t, strides_t), dim=1)


def _decode_boxes(deltas: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    stride = priors[None, :, 2:3]
    centers = deltas[..., :2] * stride + priors[None, :, :2]
    sizes = deltas[..., 2:].exp() * stride
    return torch.cat((centers - sizes / 2, centers + sizes / 2), dim=-1)


def _encode_boxes(boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """The raw deltas that decode to ``boxes`` at ``priors`` (MMPose's ``bbox_aux_targets``)."""
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    sizes = boxes[:, 2:] - boxes[:, :2]
    return torch.cat(((centers - priors[:, :2]) / priors[:, 2:], torch.log(sizes / priors[:, 2:] + 1e-8)), dim=-1)


@contextlib.contextmanager
def _running_statistics_if_single(module: nn.Module, *, rows: int) -> Iterator[None]:
    """Batch statistics of one row do not exist (MMPose's BatchNorm1d raises there, ending the run): for a batch with
    a single positive, the DCC's BatchNorm layers use their running statistics instead, and leave them as they are."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if rows != 1 or not norms:
        yield
        return
    for norm in norms:
        norm.eval()
    try:
        yield
    finally:
        for norm in norms:
            norm.train()
