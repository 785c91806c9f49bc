"""The keypoint decoder: the DCC's inference path as a graph of its own, exported next to the engine.

``(pose_vectors (N, C), boxes (N, 4) xyxy, priors (N, 2))`` of N people → keypoints ``(N, J, 2)`` in network-input
pixels: the function ``DCC.forward`` computes (MMPose's ``RTMOHead`` decode), arranged to cost about a sixth of it.

- **Re-associated bin transform.** MMPose runs each of the 192 + 256 sine-encoded bin positions through ``x_fc`` /
  ``y_fc`` (128×128) and then takes their similarity with the J keypoint features. ``feats @ (enc @ W.T + b).T``
  equals ``(feats @ W) @ enc.T + feats @ b``: the 128×128 layer meets J = 17 features instead of 448 bins.
- **Sine encoding by angle addition.** Bin ``i = B·a + c`` sits at ``b_{Ba}·s + c·δ·s`` (bins are evenly spaced,
  ``δ`` apart, ``s`` the padded box size), so ``sin``/``cos`` of its ``64`` frequencies follow from those of the block
  start and of the in-block offset: ``(192 + 256)·64`` transcendentals per person become ``(12 + 16 + 16 + 16)·64``.

Both change only float rounding; the parity suite measures it against MMPose run in float64. Everything stays FP32:
the bin positions are pixel offsets fed to sin/cos, which FP16 cannot resolve (the TensorRT build keeps it FP32).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rtmo.head import DCC

__all__ = ["BINS_PER_BLOCK", "KeypointDecoder"]

BINS_PER_BLOCK = 16  # divides both bin counts (192, 256)


class KeypointDecoder(nn.Module):
    """Keypoints from the DCC inputs of the people that survived NMS; shares (does not copy) ``dcc``'s weights.

    Args:
        dcc: the head's DCC (eval mode: its BatchNorm uses running statistics).
        bbox_padding: MMPose's ``bbox_padding`` (1.25): the bins span the box scaled by it.
    """

    def __init__(self, dcc: DCC, *, bbox_padding: float) -> None:
        super().__init__()
        self.dcc = dcc
        self.bbox_padding = float(bbox_padding)
        for name, bins in (("x", dcc.x_bins), ("y", dcc.y_bins)):
            if len(bins) % BINS_PER_BLOCK:
                raise ValueError(f"DCC {name}_bins: {len(bins)} bins; accepted: a multiple of {BINS_PER_BLOCK}")
            step = (bins[-1] - bins[0]) / (len(bins) - 1)
            self.register_buffer(f"{name}_block_starts", bins[::BINS_PER_BLOCK].clone(), persistent=False)
            self.register_buffer(f"{name}_offsets", torch.arange(BINS_PER_BLOCK) * step, persistent=False)

    def _sine_encoding(
        self, block_starts: torch.Tensor, offsets: torch.Tensor, scale: torch.Tensor, rel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and ``sin`` of every bin position over the 64 frequencies, each (N, bins, 64) (``DCC._encode``)."""
        inverse_dim_t = 1.0 / self.dcc.spe.dim_t
        start = (block_starts[None] * scale + rel)[..., None] * inverse_dim_t  # (N, blocks, 64)
        offset = (offsets[None] * scale)[..., None] * inverse_dim_t  # (N, BINS_PER_BLOCK, 64)
        sin_a, cos_a = start.sin()[:, :, None], start.cos()[:, :, None]
        sin_c, cos_c = offset.sin()[:, None], offset.cos()[:, None]
        # reshape with the bin count known (not flatten): -1 then stands for N, which may be 0.
        bins = len(block_starts) * BINS_PER_BLOCK
        cos = (cos_a * cos_c - sin_a * sin_c).reshape(-1, bins, start.shape[-1])
        sin = (sin_a * cos_c + cos_a * sin_c).reshape(-1, bins, start.shape[-1])
        return cos, sin

    @torch.inference_mode()
    def decode_numpy(self, pose_vectors: np.ndarray, boxes: np.ndarray, priors: np.ndarray) -> np.ndarray:
        """:meth:`forward` on NumPy arrays: a ``rtmo.runtime.postprocess.KeypointDecode``."""
        arrays = (np.ascontiguousarray(a, dtype=np.float32) for a in (pose_vectors, boxes, priors))
        return self(*(torch.from_numpy(a) for a in arrays)).numpy()

    def forward(self, pose_vectors: torch.Tensor, boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        dcc = self.dcc
        center = (boxes[:, 2:] + boxes[:, :2]) * 0.5
        scale = (boxes[:, 2:] - boxes[:, :2]) * self.bbox_padding
        rel = center - priors
        feats = dcc.pose_to_kpts(pose_vectors).reshape(-1, dcc.num_keypoints, dcc.feat_channels)
        feats = dcc.gau(feats, dcc.pos_enc)
        half = dcc.x_fc.in_features // 2  # the encoding is cat(cos, sin): each half of the layer meets one of them
        coordinates = []
        for axis, fc, bins in ((0, dcc.x_fc, dcc.x_bins), (1, dcc.y_fc, dcc.y_bins)):
            name = "xy"[axis]
            cos, sin = self._sine_encoding(
                getattr(self, f"{name}_block_starts"),
                getattr(self, f"{name}_offsets"),
                scale[:, axis : axis + 1],
                rel[:, axis : axis + 1],
            )
            projected = torch.matmul(feats, fc.weight)  # (N, J, 128)
            logits = torch.matmul(projected[..., :half], cos.transpose(-1, -2))
            logits = logits + torch.matmul(projected[..., half:], sin.transpose(-1, -2))
            logits = logits + torch.matmul(feats, fc.bias)[..., None]
            positions = bins[None] * scale[:, axis : axis + 1] + center[:, axis : axis + 1]  # (N, bins)
            coordinates.append(_softmax_mean(logits, positions))
        return torch.stack(coordinates, dim=-1)


def _softmax_mean(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``(softmax(logits) * positions).sum(-1)`` as MMPose computes it (clamped logits, +1e-8 in the denominator),
    with one division per keypoint instead of one per bin."""
    logits = logits.clamp(-5e4, 5e4)
    weights = (logits - logits.max(dim=-1, keepdim=True).values).exp()
    weighted = torch.matmul(weights, positions[..., None])[..., 0]
    return weighted / (weights.sum(-1) + 1e-8)
