"""Pure NumPy pre- and post-processing shared by ``RTMO.predict`` and the Triton models.

Reproduces MMPose's bottom-up RTMO inference exactly:
letterbox (``BottomupResize``, resize mode 'fit', centred, pad 114) → network → score filter → greedy
class-agnostic NMS → DCC keypoint decode on the survivors → box clamp in input space → un-letterbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "DCCWeights",
    "Letterbox",
    "Poses",
    "PAD_VALUE",
    "dcc_decode",
    "letterbox",
    "make_priors",
    "nms",
    "postprocess",
    "unletterbox",
    "validate_image",
]

PAD_VALUE = 114
_EPS = 1e-8


def validate_image(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is a non-empty uint8 HxWx3 array, else raise ``ValueError`` naming ``name``."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy.ndarray (uint8, HxWx3, BGR), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8 (HxWx3, BGR), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected shape HxWx3 (3 BGR channels), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: image is empty (shape {image.shape}); height and width must be >= 1")
    return image


@dataclass(frozen=True)
class Letterbox:
    """Where an image sits inside the network input; MMPose's ``input_center``/``input_scale``/``input_size``."""

    center: np.ndarray  # (2,) float32, image centre (x, y) in image pixels
    scale: np.ndarray  # (2,) float32, image-pixel extent covered by the whole network input
    input_size: tuple[int, int]  # (width, height) of the network input

    def as_array(self) -> np.ndarray:
        """(6,) float32 ``[cx, cy, sx, sy, in_w, in_h]``: the form passed between Triton models."""
        return np.array([*self.center, *self.scale, *self.input_size], dtype=np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> Letterbox:
        values = np.asarray(values, dtype=np.float32).reshape(6)
        return cls(center=values[0:2].copy(), scale=values[2:4].copy(), input_size=(int(values[4]), int(values[5])))


def _warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    # Three point pairs in float32, as mmpose.structures.bbox.get_warp_matrix builds them (rot=0, no shift).
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([scale[0] * -0.5, 0.0])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([dst_w * -0.5, 0.0])
    for pts in (src, dst):
        direction = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-direction[1], direction[0]])
    return cv2.getAffineTransform(src, dst)


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Fit ``image`` (uint8 HxWx3) into ``input_size`` (w, h), centred, padded with 114, one bilinear warp.

    Returns:
        The network input canvas (uint8, h x w x 3) and the ``Letterbox`` needed to map results back.
    """
    validate_image(image)
    img_h, img_w = image.shape[:2]
    pad_w, pad_h = input_size
    ratio = img_w / img_h
    rsz_w = min(pad_w, pad_h * ratio)
    rsz_h = min(pad_h, pad_w / ratio)
    center = np.array([img_w / 2, img_h / 2], dtype=np.float32)
    scale = np.array([img_w * pad_w / rsz_w, img_h * pad_h / rsz_h], dtype=np.float32)
    matrix = _warp_matrix(center, scale, (pad_w, pad_h))
    canvas = cv2.warpAffine(image, matrix, (pad_w, pad_h), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    return canvas, Letterbox(center=center, scale=scale, input_size=(pad_w, pad_h))


def unletterbox(points: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map (..., 2) input-pixel points back to image pixels (MMPose ``add_pred_to_datasample``)."""
    size = np.asarray(box.input_size, dtype=np.float64)
    return points / size * box.scale + box.center - 0.5 * box.scale


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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS suppressing IoU > ``iou_threshold``; indices of kept boxes, best score first.

    Same arithmetic as MMPose's ``nms_torch`` with ``bbox_overlaps`` (no +1, union clamped at 1e-6).
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float32, copy=False)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        lt = np.maximum(boxes[best, :2], boxes[rest, :2])
        rb = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        wh = np.clip(rb - lt, 0, None)
        overlap = wh[:, 0] * wh[:, 1]
        union = np.maximum(areas[best] + areas[rest] - overlap, np.float32(1e-6))
        order = rest[overlap / union <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


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


@dataclass
class Poses:
    """People found in one image, in image pixels, best box score first.

    Attributes:
        bboxes: (N, 4) float32 xyxy.
        bbox_scores: (N,) float32.
        keypoints: (N, K, 2) float32 (x, y).
        keypoint_scores: (N, K) float32 visibility scores.
        truncated: True when every one of the top-K candidates passed the score threshold, so more
            people may have been cut off by the engine's fixed K.
    """

    bboxes: np.ndarray
    bbox_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.bbox_scores)


def postprocess(
    scores: np.ndarray,
    boxes: np.ndarray,
    keypoint_visibility: np.ndarray,
    pose_vectors: np.ndarray,
    priors: np.ndarray,
    *,
    dcc: DCCWeights,
    box: Letterbox,
    score_thr: float,
    nms_thr: float,
    max_people: int | None = None,
    num_anchors: int | None = None,
) -> Poses:
    """One image's candidates (sorted by score, as the engine emits them) → ``Poses`` in image pixels.

    Args:
        scores: (K,) detection scores (sigmoid applied).
        boxes: (K, 4) xyxy in input pixels.
        keypoint_visibility: (K, J) visibility scores (sigmoid applied).
        pose_vectors: (K, C) DCC inputs.
        priors: (K, 2) anchor points of the candidates.
        dcc: DCC weights.
        box: where the image sits in the network input.
        score_thr: keep candidates with score strictly above this.
        nms_thr: suppress boxes overlapping a better one with IoU strictly above this.
        max_people: keep at most this many (best first); ``None`` keeps all.
        num_anchors: anchors the network has; when the candidates are all of them nothing can be truncated.
    """
    passing = np.flatnonzero(scores > score_thr)
    cut_off = num_anchors is None or len(scores) < num_anchors
    truncated = cut_off and len(scores) > 0 and passing.size == len(scores)
    passing = passing[np.argsort(-scores[passing], kind="stable")]
    keep = passing[nms(boxes[passing], scores[passing], nms_thr)] if passing.size else passing
    if max_people is not None:
        keep = keep[:max_people]
    kept_boxes = boxes[keep].astype(np.float32)
    keypoints = dcc_decode(dcc, pose_vectors[keep], kept_boxes, priors[keep])
    width, height = box.input_size
    clamped = kept_boxes.copy()
    clamped[:, 0::2] = np.clip(clamped[:, 0::2], 0, width)
    clamped[:, 1::2] = np.clip(clamped[:, 1::2], 0, height)
    return Poses(
        bboxes=unletterbox(clamped.reshape(-1, 2, 2), box).reshape(-1, 4).astype(np.float32),
        bbox_scores=scores[keep].astype(np.float32),
        keypoints=unletterbox(keypoints, box).astype(np.float32),
        keypoint_scores=keypoint_visibility[keep].astype(np.float32),
        truncated=truncated,
    )
