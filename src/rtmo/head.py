"""RTMO head: per-level dual-branch conv head and the dynamic coordinate classifier (DCC) with its GAU.

Module and parameter names follow MMPose's ``RTMOHead`` so zoo checkpoints load with ``strict=True``.
Training-only layers (``out_kpt_reg``, ``sigma_fc``) are kept for that reason.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rtmo.config import RTMOConfig
from rtmo.keypoints import COCO_SIGMAS, CROWDPOSE_SIGMAS, layout_for
from rtmo.layers import YOLO_BN, ConvModule

__all__ = [
    "DCC",
    "GAUEncoder",
    "HeadOutputs",
    "TrainHeadOutputs",
    "RTMOHead",
    "RTMOHeadModule",
    "COCO_SIGMAS",
    "CROWDPOSE_SIGMAS",
]

HeadOutputs = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]
TrainHeadOutputs = tuple[
    list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]
]


class RTMOHeadModule(nn.Module):
    """Per stride level: the input splits in half along channels into a classification and a pose branch."""

    def __init__(self, config: RTMOConfig) -> None:
        super().__init__()
        w = config.widen_factor
        in_channels = int(256 * w)  # half of the projector output
        cls_channels = int(256 * w)
        pose_channels = 8 * int(36 * w)
        levels = range(len(config.featmap_strides))
        k = config.num_keypoints
        self.conv_cls = nn.ModuleList(
            nn.Sequential(
                ConvModule(in_channels, cls_channels, 3, bn=YOLO_BN),
                ConvModule(cls_channels, cls_channels, 3, bn=YOLO_BN),
            )
            for _ in levels
        )
        self.out_cls = nn.ModuleList(nn.Conv2d(cls_channels, config.num_classes, 1) for _ in levels)
        self.conv_pose = nn.ModuleList(
            nn.Sequential(
                ConvModule(in_channels, pose_channels, 3, bn=YOLO_BN),
                *(ConvModule(pose_channels, pose_channels, 3, groups=8, bn=YOLO_BN) for _ in range(3)),
            )
            for _ in levels
        )
        self.out_bbox = nn.ModuleList(nn.Conv2d(pose_channels, 4, 1) for _ in levels)
        self.out_kpt_reg = nn.ModuleList(nn.Conv2d(pose_channels, 2 * k, 1) for _ in levels)  # training only
        self.out_kpt_vis = nn.ModuleList(nn.Conv2d(pose_channels, k, 1) for _ in levels)
        self.out_pose = nn.ModuleList(nn.Conv2d(pose_channels, config.pose_vec_channels, 1) for _ in levels)
        prior_logit = -math.log((1 - 0.01) / 0.01)
        for conv in self.out_cls:
            nn.init.constant_(conv.bias, prior_logit)

    def forward(self, feats: list[torch.Tensor]) -> HeadOutputs:
        outputs = self._levels(feats, with_offsets=False)
        return outputs[0], outputs[1], outputs[3], outputs[4]

    def forward_train(self, feats: list[torch.Tensor]) -> TrainHeadOutputs:
        """``(cls_scores, bbox_preds, kpt_offsets, kpt_vis, pose_feats)``: also the keypoint offsets that training
        uses as proxy poses for the assignment (MMPose's ``RTMOHeadModule.forward`` in train mode)."""
        return self._levels(feats, with_offsets=True)

    def _levels(self, feats: list[torch.Tensor], *, with_offsets: bool) -> TrainHeadOutputs:
        cls_scores, bbox_preds, kpt_offsets, kpt_vis, pose_feats = [], [], [], [], []
        for i, x in enumerate(feats):
            cls_feat, reg_feat = x.split(x.size(1) // 2, dim=1)
            cls_feat = self.conv_cls[i](cls_feat)
            reg_feat = self.conv_pose[i](reg_feat)
            cls_scores.append(self.out_cls[i](cls_feat))
            bbox_preds.append(self.out_bbox[i](reg_feat))
            if with_offsets:
                kpt_offsets.append(self.out_kpt_reg[i](reg_feat))
            kpt_vis.append(self.out_kpt_vis[i](reg_feat))
            pose_feats.append(self.out_pose[i](reg_feat))
        return cls_scores, bbox_preds, kpt_offsets, kpt_vis, pose_feats


class ScaleNorm(nn.Module):
    """x / clamp(||x|| · dim^-0.5, eps) · g."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class ChannelWiseScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class GAUEncoder(nn.Module):
    """Gated attention unit over the keypoint tokens (squared-ReLU attention, additive positions)."""

    def __init__(self, dim: int = 128, *, expansion_factor: int = 2, s: int = 128) -> None:
        super().__init__()
        self.s = s
        self.e = dim * expansion_factor
        self.uv = nn.Linear(dim, 2 * self.e + s, bias=False)
        self.o = nn.Linear(self.e, dim, bias=False)
        self.gamma = nn.Parameter(torch.rand(2, s))
        self.beta = nn.Parameter(torch.rand(2, s))
        self.ln = ScaleNorm(dim)
        self.res_scale = ChannelWiseScale(dim)
        nn.init.xavier_uniform_(self.uv.weight)

    def forward(self, x: torch.Tensor, pos_enc: torch.Tensor) -> torch.Tensor:
        uv = F.silu(self.uv(self.ln(x)))
        u, v, base = torch.split(uv, [self.e, self.e, self.s], dim=-1)
        q = base * self.gamma[0] + self.beta[0] + pos_enc
        k = base * self.gamma[1] + self.beta[1] + pos_enc
        kernel = torch.square(F.relu(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.s)))
        return self.res_scale(x) + self.o(u * torch.matmul(kernel, v))


class Scale(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _Frequencies(nn.Module):
    """Holds ``dim_t`` of the 1-D sine encoding of bin positions (``spe`` in MMPose)."""

    def __init__(self, channels: int, temperature: float) -> None:
        super().__init__()
        half = channels // 2
        self.register_buffer("dim_t", temperature ** (torch.arange(half, dtype=torch.float32) / half))


class DCC(nn.Module):
    """Dynamic coordinate classifier: per instance, 1-D heatmaps over bins laid across the padded box.

    The inference path used by ``RTMO.predict`` and the Triton postprocessor is ``rtmo.keypoint_decoder``
    (exported as ``keypoints.onnx``), which shares these weights; this module serves training and cross-checks.
    """

    def __init__(
        self, in_channels: int, num_keypoints: int, *, feat_channels: int = 128, num_bins: tuple[int, int] = (192, 256)
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.feat_channels = feat_channels
        self.spe = _Frequencies(128, 300.0)
        self.gau = GAUEncoder(feat_channels)
        self.pos_enc = nn.Parameter(torch.randn(num_keypoints, 128))
        self.pose_to_kpts = nn.Sequential(
            nn.Linear(in_channels, feat_channels * num_keypoints), nn.BatchNorm1d(feat_channels * num_keypoints)
        )
        self.x_fc = nn.Linear(128, feat_channels)
        self.y_fc = nn.Linear(128, feat_channels)
        self.sigma_fc = nn.Sequential(nn.Linear(in_channels, num_keypoints), nn.Sigmoid(), Scale(0.1))  # training only
        self.register_buffer("x_bins", torch.linspace(-0.5, 0.5, num_bins[0]))
        self.register_buffer("y_bins", torch.linspace(-0.5, 0.5, num_bins[1]))

    def _encode(self, positions: torch.Tensor) -> torch.Tensor:
        freq = positions.unsqueeze(-1) / self.spe.dim_t
        return torch.cat((freq.cos(), freq.sin()), dim=-1)

    def forward(
        self, pose_vecs: torch.Tensor, bboxes: torch.Tensor, priors: torch.Tensor, padding: float = 1.25
    ) -> torch.Tensor:
        """Keypoints (N, K, 2) in input pixels for N instances with boxes (N, 4) xyxy and prior points (N, 2)."""
        center = (bboxes[:, 2:] + bboxes[:, :2]) * 0.5
        scale = (bboxes[:, 2:] - bboxes[:, :2]) * padding
        rel = center - priors
        x_pos = self.x_bins[None] * scale[:, 0:1]
        y_pos = self.y_bins[None] * scale[:, 1:2]
        x_enc = self.x_fc(self._encode(x_pos + rel[:, 0:1]))
        y_enc = self.y_fc(self._encode(y_pos + rel[:, 1:2]))
        feats = self.pose_to_kpts(pose_vecs).reshape(-1, self.num_keypoints, self.feat_channels)
        feats = self.gau(feats, self.pos_enc)
        x_prob = _stable_softmax(torch.matmul(feats, x_enc.transpose(-1, -2)))
        y_prob = _stable_softmax(torch.matmul(feats, y_enc.transpose(-1, -2)))
        x = (x_prob * (x_pos + center[:, 0:1]).unsqueeze(1)).sum(-1)
        y = (y_prob * (y_pos + center[:, 1:2]).unsqueeze(1)).sum(-1)
        return torch.stack((x, y), dim=-1)

    def forward_train(
        self, pose_vecs: torch.Tensor, bbox_cs: torch.Tensor, priors: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """MMPose's ``DCC.forward_train``: keypoints (N, K, 2), the 1-D heatmaps ((N, K, Bx), (N, K, By)) and the
        learned per-keypoint spreads (N, K), for boxes given as centre and padded size ``bbox_cs`` (N, 4)."""
        sigmas = self.sigma_fc(pose_vecs)
        center, scale = bbox_cs.split(2, dim=-1)
        x_pos = self.x_bins[None] * scale[:, 0:1]
        y_pos = self.y_bins[None] * scale[:, 1:2]
        rel = center - priors
        x_enc = self.x_fc(self._encode(x_pos + rel[:, 0:1]))
        y_enc = self.y_fc(self._encode(y_pos + rel[:, 1:2]))
        feats = self.pose_to_kpts(pose_vecs).reshape(-1, self.num_keypoints, self.feat_channels)
        feats = self.gau(feats, self.pos_enc)
        # the max is detached as MMPose detaches it: same values, and the same gradient rounding
        x_prob = _stable_softmax(torch.matmul(feats, x_enc.transpose(-1, -2)), detach_max=True)
        y_prob = _stable_softmax(torch.matmul(feats, y_enc.transpose(-1, -2)), detach_max=True)
        x = (x_prob * (x_pos + center[:, 0:1]).unsqueeze(1)).sum(-1)
        y = (y_prob * (y_pos + center[:, 1:2]).unsqueeze(1)).sum(-1)
        return torch.stack((x, y), dim=-1), (x_prob, y_prob), sigmas

    def target_heatmaps(
        self, keypoints: torch.Tensor, bbox_cs: torch.Tensor, sigmas: torch.Tensor, areas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Laplacian target heatmaps over the bins for target keypoints (N, K, 2), normalised by the instance
        size and the predicted spreads (MMPose's ``DCC.generate_target_heatmap``)."""
        center, scale = bbox_cs.split(2, dim=-1)
        x_bins = self.x_bins[None] * scale[:, 0:1] + center[:, 0:1]
        y_bins = self.y_bins[None] * scale[:, 1:2] + center[:, 1:2]
        dist_x = torch.abs(keypoints.narrow(2, 0, 1) - x_bins.unsqueeze(1))
        dist_y = torch.abs(keypoints.narrow(2, 1, 1) - y_bins.unsqueeze(1))
        size = areas.pow(0.5).clip(min=1).reshape(-1, 1, 1)
        sigmas = sigmas.clip(min=1e-3).unsqueeze(2)
        dist_x = dist_x / size / sigmas
        dist_y = dist_y / size / sigmas
        return torch.exp(-dist_x / 2) / sigmas, torch.exp(-dist_y / 2) / sigmas


def _stable_softmax(logits: torch.Tensor, *, detach_max: bool = False) -> torch.Tensor:
    logits = logits.clamp(-5e4, 5e4)
    peak = logits.max(dim=-1, keepdim=True).values
    exp = (logits - (peak.detach() if detach_max else peak)).exp()
    return exp / (exp.sum(dim=-1, keepdim=True) + 1e-8)


class _OKSSigmas(nn.Module):
    """Placeholder for MMPose's ``loss_oks`` so its ``sigmas`` buffer loads strictly."""

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        sigmas = layout_for(num_keypoints).sigmas
        self.register_buffer("sigmas", torch.tensor(sigmas, dtype=torch.float32))


class RTMOHead(nn.Module):
    """Container matching MMPose's ``head.*`` keys: ``head_module``, ``dcc``, ``loss_oks``."""

    def __init__(self, config: RTMOConfig) -> None:
        super().__init__()
        self.head_module = RTMOHeadModule(config)
        self.dcc = DCC(
            config.pose_vec_channels,
            config.num_keypoints,
            feat_channels=config.dcc_feat_channels,
            num_bins=config.dcc_num_bins,
        )
        self.loss_oks = _OKSSigmas(config.num_keypoints)

    def forward(self, feats: list[torch.Tensor]) -> HeadOutputs:
        return self.head_module(feats)
