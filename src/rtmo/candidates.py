"""The deployable graph: network + box decode + per-image top-K candidates.

Everything after it (threshold, NMS, DCC keypoint decode, un-letterbox) runs in FP32 NumPy
(``rtmo.runtime.postprocess.people``); the DCC is per instance and FP16-sensitive, so it stays out of the engine.
``RTMO.predict`` runs this same module with K = all anchors, so it equals MMPose exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rtmo_contract import CANDIDATES, LETTERBOXED_IMAGES

__all__ = [
    "CANDIDATE_OUTPUTS",
    "CandidateNet",
    "INPUT_LAYOUTS",
    "INPUT_NAME",
    "flatten_levels",
    "make_priors",
    "to_numpy",
]


INPUT_NAME = LETTERBOXED_IMAGES.name
# "uint8_nhwc" is what the model repository serves; "float32_nchw" exists to measure that choice
# (rtmo_bench.input_layout).
INPUT_LAYOUTS = ("uint8_nhwc", "float32_nchw")
# Output names, in order; the engine's config.pbtxt uses exactly these.
CANDIDATE_OUTPUTS = tuple(tensor.name for tensor in CANDIDATES)


def make_priors(input_size: tuple[int, int], strides: tuple[int, ...] = (16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Centred anchor points (A, 2) float32 and their strides (A,), level by level, row-major.

    Matches ``MlvlPointGenerator(centralize_points=True)``: x = i·stride + (stride − 1)/2.
    """
    points, point_strides = [], []
    width, height = input_size
    for stride in strides:
        offset = (stride - 1) / 2.0
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        grid = np.stack([xs.ravel() * stride + offset, ys.ravel() * stride + offset], axis=1)
        points.append(grid.astype(np.float32))
        point_strides.append(np.full(len(grid), stride, dtype=np.float32))
    return np.concatenate(points), np.concatenate(point_strides)


class CandidateNet(nn.Module):
    """Letterboxed uint8 NHWC BGR images → the ``top_k`` best-scoring anchors per image.

    Args:
        model: an ``RTMO`` in eval mode.
        top_k: candidates per image; clipped to the number of anchors.
        input_layout: ``"uint8_nhwc"`` (B, S, S, 3) uint8, or ``"float32_nchw"`` (B, 3, S, S) float32 BGR 0..255.

    Outputs (B = batch, K = top_k, J = keypoints, C = pose-vector channels), sorted by score:
        scores (B, K), boxes (B, K, 4) xyxy input pixels, keypoint_visibility (B, K, J),
        pose_vectors (B, K, C), priors (B, K, 2) anchor points.
    """

    def __init__(self, model: nn.Module, *, top_k: int, input_layout: str = "uint8_nhwc") -> None:
        super().__init__()
        if input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout: got {input_layout!r}; accepted: {', '.join(INPUT_LAYOUTS)}")
        self.input_layout = input_layout
        self.model = model
        size = model.config.input_size
        priors, strides = make_priors((size, size), model.config.featmap_strides)
        self.register_buffer("anchor_points", torch.from_numpy(priors), persistent=False)
        self.register_buffer("anchor_strides", torch.from_numpy(strides)[:, None], persistent=False)
        self.top_k = int(min(top_k, len(priors)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # uint8 NHWC in: 4x less data from the preprocessor than float NCHW; the cast is free on the GPU.
        # contiguous(): a channels-last float tensor would take other conv kernels and round differently from MMPose.
        x = images.permute(0, 3, 1, 2).float().contiguous() if self.input_layout == "uint8_nhwc" else images
        cls_scores, bbox_preds, kpt_vis, pose_feats = self.model(x)
        scores = flatten_levels(cls_scores).sigmoid().amax(dim=-1)
        deltas = flatten_levels(bbox_preds)
        vis = flatten_levels(kpt_vis).sigmoid()
        pose = flatten_levels(pose_feats)

        centers = deltas[..., :2] * self.anchor_strides + self.anchor_points
        half_wh = deltas[..., 2:].exp() * self.anchor_strides / 2
        boxes = torch.cat((centers - half_wh, centers + half_wh), dim=-1)

        top_scores, index = torch.topk(scores, self.top_k, dim=1, largest=True, sorted=True)
        priors = self.anchor_points[index]

        def take(t: torch.Tensor) -> torch.Tensor:
            return torch.gather(t, 1, index.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

        return top_scores, take(boxes), take(vis), take(pose), priors


def flatten_levels(levels: list[torch.Tensor]) -> torch.Tensor:
    """Per-level (B, C, H, W) head outputs as (B, A, C), level by level, row-major: the priors' order."""
    return torch.cat([x.permute(0, 2, 3, 1).flatten(1, 2) for x in levels], dim=1)


def to_numpy(outputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
    return tuple(t.detach().cpu().numpy() for t in outputs)
