"""The keypoint decoder: the DCC's inference path as a graph of its own, exported next to the engine.

``(pose_vectors (N, C), boxes (N, 4) xyxy, priors (N, 2))`` of N people → keypoints ``(N, J, 2)`` in network-input
pixels: the function ``DCC.forward`` computes (MMPose's ``RTMOHead`` decode), arranged to cost about a sixth of it.

- **Re-associated bin transform.** MMPose runs each of the 192 + 256 sine-encoded bin positions through ``x_fc`` /
  ``y_fc`` (128×128) and then takes their similarity with the J keypoint features. ``feats @ (enc @ W.T + b).T``
  equals ``(feats @ W) @ enc.T + feats @ b``: the 128×128 layer meets J = 17 features instead of 448 bins.
- **Angle addition on the keypoint side.** Bin ``i = B·a + c`` sits at angle ``A_a + C_c`` per frequency (bins are
  evenly spaced, so ``A_a`` is the block start and ``C_c`` the in-block offset). With ``P = feats @ W`` split into its
  cos and sin halves, ``P_cos·cos(A+C) + P_sin·sin(A+C)`` regroups as ``U·cos C + V·sin C`` with
  ``U = P_cos·cos A + P_sin·sin A`` and ``V = P_sin·cos A − P_cos·sin A``: the elementwise work is done on
  J × blocks rows (17 × 3 for 192 bins) rather than on all bins, and one matmul per axis with the encoding of the B
  in-block offsets gives every logit. That encoding comes from a second angle addition (8 × 8), so a person costs
  ``(3 + 4 + 4·8)·64·2`` sin/cos instead of ``448·64·2``.

Both change only float rounding; the parity suite measures it against MMPose run in float64. Everything stays FP32:
the bin positions are pixel offsets fed to sin/cos, which FP16 cannot resolve (the TensorRT build keeps it FP32).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rtmo.head import DCC

__all__ = ["BINS_PER_BLOCK", "BINS_PER_SUB_BLOCK", "KeypointDecoder"]

BINS_PER_BLOCK = 64  # divides both bin counts (192, 256)
BINS_PER_SUB_BLOCK = 8  # divides BINS_PER_BLOCK: the in-block offsets' own angle addition


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

    def _axis_buffers(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_buffer(f"{name}_block_starts"), self.get_buffer(f"{name}_offsets")

    def _offset_encoding(self, offsets: torch.Tensor, scale: torch.Tensor, inverse_dim_t: torch.Tensor) -> torch.Tensor:
        """``cat(cos, sin)`` of the in-block offsets ``c·δ·s`` over the 64 frequencies: (N, BINS_PER_BLOCK, 128)."""
        coarse = (offsets[::BINS_PER_SUB_BLOCK][None] * scale)[..., None] * inverse_dim_t  # (N, B / 8, 64)
        fine = (offsets[:BINS_PER_SUB_BLOCK][None] * scale)[..., None] * inverse_dim_t  # (N, 8, 64)
        cos_u, sin_u = coarse.cos()[:, :, None], coarse.sin()[:, :, None]
        cos_v, sin_v = fine.cos()[:, None], fine.sin()[:, None]
        encoding = torch.cat((cos_u * cos_v - sin_u * sin_v, sin_u * cos_v + cos_u * sin_v), dim=-1)
        return encoding.reshape(-1, BINS_PER_BLOCK, encoding.shape[-1])

    def _logits(
        self, projected: torch.Tensor, name: str, scale: torch.Tensor, rel: torch.Tensor, inverse_dim_t: torch.Tensor
    ) -> torch.Tensor:
        """``(feats W) enc^T`` of one axis, (N, J, bins), by angle addition on the keypoint side."""
        block_starts, offsets = self._axis_buffers(name)
        half = projected.shape[-1] // 2  # the encoding is cat(cos, sin): each half of W meets one of them
        p_cos, p_sin = projected[..., :half], projected[..., half:]
        start = (block_starts[None] * scale + rel)[..., None] * inverse_dim_t  # (N, blocks, 64)
        cos_start, sin_start = start.cos(), start.sin()
        cos_a = torch.cat((cos_start, cos_start), -1)[:, None]
        sin_a = torch.cat((sin_start, sin_start), -1)[:, None]
        # cat(U, V) = cat(P_cos, P_sin)·cat(cos A, cos A) + cat(P_sin, −P_cos)·cat(sin A, sin A): (N, J, blocks, 128)
        rotated = projected[:, :, None] * cos_a + torch.cat((p_sin, -p_cos), -1)[:, :, None] * sin_a
        joints, blocks = projected.shape[1], len(block_starts)
        offset_encoding = self._offset_encoding(offsets, scale, inverse_dim_t)
        logits = torch.matmul(rotated.reshape(-1, joints * blocks, 2 * half), offset_encoding.transpose(-1, -2))
        return logits.reshape(-1, joints, blocks * BINS_PER_BLOCK)

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
        inverse_dim_t = 1.0 / dcc.spe.dim_t
        coordinates = []
        for axis, name, fc, bins in ((0, "x", dcc.x_fc, dcc.x_bins), (1, "y", dcc.y_fc, dcc.y_bins)):
            own_scale, own_center = scale[:, axis : axis + 1], center[:, axis : axis + 1]
            logits = self._logits(
                torch.matmul(feats, fc.weight), name, own_scale, rel[:, axis : axis + 1], inverse_dim_t
            )
            logits = logits + torch.matmul(feats, fc.bias)[..., None]
            coordinates.append(_softmax_mean(logits, bins[None] * own_scale + own_center))
        return torch.stack(coordinates, dim=-1)


def _softmax_mean(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``(softmax(logits) * positions).sum(-1)`` as MMPose computes it (clamped logits, +1e-8 in the denominator),
    with one division per keypoint instead of one per bin."""
    logits = logits.clamp(-5e4, 5e4)
    weights = (logits - logits.max(dim=-1, keepdim=True).values).exp()
    weighted = torch.matmul(weights, positions[..., None])[..., 0]
    return weighted / (weights.sum(-1) + 1e-8)
