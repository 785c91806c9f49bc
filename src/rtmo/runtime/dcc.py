"""The DCC (dynamic coordinate classifier) keypoint decoder in FP32 NumPy: pose vectors + boxes -> keypoints.

Reproduces ``mmpose.models.heads.hybrid_heads.rtmo_head.DCC`` at inference: sine-encoded bin positions through
``x_fc``/``y_fc``, pose features through ``pose_to_kpts`` and the GAU, 1-D heatmaps by similarity, soft-argmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DCCWeights", "dcc_decode"]

_EPS = 1e-8


@dataclass(frozen=True)
class DCCWeights:
    """FP32 weights of the DCC (keypoint decoder), as stored in ``dcc.npz`` next to the ONNX model."""

    pose_fc_weight: np.ndarray  # (K*F, C)
    pose_fc_bias: np.ndarray
    bn_mean: np.ndarray
    bn_var: np.ndarray
    bn_weight: np.ndarray
    bn_bias: np.ndarray
    bn_eps: float
    gau_uv: np.ndarray  # (2e+s, F)
    gau_o: np.ndarray  # (F, e)
    gau_gamma: np.ndarray  # (2, s)
    gau_beta: np.ndarray  # (2, s)
    gau_g: float
    gau_res_scale: np.ndarray  # (F,)
    pos_enc: np.ndarray  # (K, s)
    x_fc_weight: np.ndarray
    x_fc_bias: np.ndarray
    y_fc_weight: np.ndarray
    y_fc_bias: np.ndarray
    dim_t: np.ndarray  # (64,)
    x_bins: np.ndarray  # (192,)
    y_bins: np.ndarray  # (256,)
    bbox_padding: float = 1.25

    @property
    def num_keypoints(self) -> int:
        return int(self.pos_enc.shape[0])

    def save(self, path: Path) -> None:
        """Write all fields to an ``.npz`` (float32 arrays, scalars as 0-d arrays)."""
        arrays = {name: np.asarray(value, dtype=np.float32) for name, value in self.__dict__.items()}
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> DCCWeights:
        with np.load(path) as data:
            missing = set(cls.__dataclass_fields__) - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a DCC weights file, missing arrays {sorted(missing)}")
            fields = {name: data[name] for name in cls.__dataclass_fields__}
        for scalar in ("bn_eps", "gau_g", "bbox_padding"):
            fields[scalar] = float(fields[scalar])
        return cls(**fields)


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _sine_encode(positions: np.ndarray, dim_t: np.ndarray) -> np.ndarray:
    freq = positions[..., None] / dim_t
    return np.concatenate((np.cos(freq), np.sin(freq)), axis=-1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.clip(logits, -5e4, 5e4)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / (exp.sum(axis=-1, keepdims=True) + np.float32(_EPS))


def dcc_decode(weights: DCCWeights, pose_vecs: np.ndarray, boxes: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Keypoints (N, K, 2) in input pixels from pose vectors (N, C), boxes (N, 4) xyxy and prior points (N, 2).

    FP32 throughout: the bin positions are pixel offsets fed to sin/cos, which FP16 cannot resolve.
    """
    w = weights
    n = len(pose_vecs)
    k = w.num_keypoints
    if n == 0:
        return np.zeros((0, k, 2), dtype=np.float32)
    pose_vecs = pose_vecs.astype(np.float32, copy=False)
    boxes = boxes.astype(np.float32, copy=False)
    center = (boxes[:, 2:] + boxes[:, :2]) * np.float32(0.5)
    scale = (boxes[:, 2:] - boxes[:, :2]) * np.float32(w.bbox_padding)
    rel = center - priors.astype(np.float32, copy=False)
    x_pos = w.x_bins[None] * scale[:, 0:1]
    y_pos = w.y_bins[None] * scale[:, 1:2]
    x_enc = _sine_encode(x_pos + rel[:, 0:1], w.dim_t) @ w.x_fc_weight.T + w.x_fc_bias  # (N, Bx, F)
    y_enc = _sine_encode(y_pos + rel[:, 1:2], w.dim_t) @ w.y_fc_weight.T + w.y_fc_bias

    feats = pose_vecs @ w.pose_fc_weight.T + w.pose_fc_bias
    feats = (feats - w.bn_mean) / np.sqrt(w.bn_var + np.float32(w.bn_eps)) * w.bn_weight + w.bn_bias
    feats = feats.reshape(n, k, -1)
    feats = _gau(w, feats)

    x_prob = _softmax(feats @ x_enc.transpose(0, 2, 1))
    y_prob = _softmax(feats @ y_enc.transpose(0, 2, 1))
    x = (x_prob * (x_pos + center[:, 0:1])[:, None, :]).sum(-1)
    y = (y_prob * (y_pos + center[:, 1:2])[:, None, :]).sum(-1)
    return np.stack((x, y), axis=-1).astype(np.float32)


def _gau(w: DCCWeights, x: np.ndarray) -> np.ndarray:
    s = w.gau_gamma.shape[1]
    e = w.gau_o.shape[1]
    norm = np.linalg.norm(x, axis=-1, keepdims=True) * np.float32(x.shape[-1] ** -0.5)
    normed = x / np.maximum(norm, np.float32(1e-5)) * np.float32(w.gau_g)
    uv = _silu(normed @ w.gau_uv.T)
    u, v, base = uv[..., :e], uv[..., e : 2 * e], uv[..., 2 * e : 2 * e + s]
    q = base * w.gau_gamma[0] + w.gau_beta[0] + w.pos_enc
    kk = base * w.gau_gamma[1] + w.gau_beta[1] + w.pos_enc
    kernel = np.square(np.maximum(q @ kk.transpose(0, 2, 1) / np.float32(np.sqrt(s)), 0))
    return x * w.gau_res_scale + (u * (kernel @ v)) @ w.gau_o.T
