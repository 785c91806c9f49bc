"""Stage 2 of the data path: one image's top-K candidates -> the people in it, in image pixels.

Score filter -> greedy class-agnostic NMS -> optional cap -> keypoint decode of the survivors (the DCC, in a compiled
runtime: see :func:`people`) -> box clamp in input space -> un-letterbox, as MMPose's bottom-up RTMO inference does;
then, if asked, MMPose's nearby-joints pose NMS. ``RTMO.predict`` and the Triton postprocess model both call
:func:`people`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rtmo.runtime.pose_nms import nearby_joints_nms
from rtmo.runtime.preprocess import Letterbox, unletterbox
from rtmo_contract import RequestParameters

__all__ = [
    "POSE_NMS_MAX_PEOPLE",
    "Candidates",
    "KeypointDecode",
    "Poses",
    "Survivors",
    "finish",
    "nms",
    "people",
    "survivors",
]

POSE_NMS_MAX_PEOPLE = 30  # MMPose's nearby_joints_nms max_dets


@dataclass(frozen=True)
class Candidates:
    """One image's engine outputs (``rtmo_contract.CANDIDATES``), best score first.

    Attributes:
        scores: (K,) detection scores (sigmoid applied).
        boxes: (K, 4) xyxy in input pixels.
        keypoint_visibility: (K, J) visibility scores (sigmoid applied).
        pose_vectors: (K, C) DCC inputs.
        priors: (K, 2) anchor points of the candidates.
    """

    scores: np.ndarray
    boxes: np.ndarray
    keypoint_visibility: np.ndarray
    pose_vectors: np.ndarray
    priors: np.ndarray


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


@dataclass
class Poses:
    """People found in one image, in image pixels, best box score first (the ``rtmo_contract.PEOPLE`` tensors).

    Attributes:
        boxes: (N, 4) float32 xyxy.
        box_scores: (N,) float32.
        keypoints: (N, J, 2) float32 (x, y).
        keypoint_scores: (N, J) float32 visibility scores.
        truncated: True when every one of the top-K candidates passed the score threshold, so more
            people may have been cut off by the engine's fixed K.
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.box_scores)

    def select(self, keep: np.ndarray) -> Poses:
        """The people at indices ``keep``, in that order."""
        return Poses(
            self.boxes[keep], self.box_scores[keep], self.keypoints[keep], self.keypoint_scores[keep], self.truncated
        )


# (pose_vectors (N, C), boxes (N, 4), priors (N, 2)) of N people -> keypoints (N, J, 2) in network-input pixels.
KeypointDecode = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Survivors:
    """The candidates of one image that become people, before their keypoints are decoded."""

    index: np.ndarray  # (N,) into the candidates, best score first
    truncated: bool


def survivors(candidates: Candidates, parameters: RequestParameters, *, num_anchors: int | None = None) -> Survivors:
    """Score filter, box NMS and (without pose NMS) the ``max_people`` cap: who gets a keypoint decode.

    Args:
        candidates: the engine's outputs for one image.
        parameters: thresholds, cap and pose NMS of the request.
        num_anchors: anchors the network has; when the candidates are all of them nothing can be truncated.
    """
    scores, boxes = candidates.scores, candidates.boxes
    passing = np.flatnonzero(scores > parameters.score_threshold)
    cut_off = num_anchors is None or len(scores) < num_anchors
    truncated = bool(cut_off and len(scores) > 0 and passing.size == len(scores))
    passing = passing[np.argsort(-scores[passing], kind="stable")]
    keep = passing[nms(boxes[passing], scores[passing], parameters.nms_iou_threshold)] if passing.size else passing
    # Pose NMS needs every box-NMS survivor; without it the cap applies before the (costly) keypoint decode.
    if parameters.max_people is not None and not parameters.pose_nms:
        keep = keep[: parameters.max_people]
    return Survivors(keep, truncated)


def finish(
    candidates: Candidates, chosen: Survivors, keypoints: np.ndarray, *, box: Letterbox, parameters: RequestParameters
) -> Poses:
    """The survivors with their decoded keypoints (input pixels) -> ``Poses`` in image pixels, pose NMS applied."""
    kept_boxes = candidates.boxes[chosen.index].astype(np.float32)
    width, height = box.input_size
    clamped = kept_boxes.copy()
    clamped[:, 0::2] = np.clip(clamped[:, 0::2], 0, width)
    clamped[:, 1::2] = np.clip(clamped[:, 1::2], 0, height)
    poses = Poses(
        boxes=unletterbox(clamped.reshape(-1, 2, 2), box).reshape(-1, 4).astype(np.float32),
        box_scores=candidates.scores[chosen.index].astype(np.float32),
        keypoints=unletterbox(keypoints, box).astype(np.float32),
        keypoint_scores=candidates.keypoint_visibility[chosen.index].astype(np.float32),
        truncated=chosen.truncated,
    )
    if parameters.pose_nms and len(poses):
        picked = nearby_joints_nms(
            poses.keypoints,
            poses.box_scores,
            num_nearby_joints_thr=poses.keypoints.shape[1] // 3,
            max_dets=POSE_NMS_MAX_PEOPLE,
        )
        poses = poses.select(picked[: parameters.max_people])
    return poses


def people(
    images: Sequence[tuple[Candidates, Letterbox, RequestParameters]],
    decode: KeypointDecode,
    *,
    num_anchors: int | None = None,
) -> list[Poses]:
    """Candidates -> people for a batch of images, with one ``decode`` call for the survivors of all of them.

    ``RTMO.predict`` decodes with the PyTorch ``KeypointDecoder``; the Triton postprocess model with the ``keypoints``
    model (the same graph, exported), so batching people across images and requests happens in one place.

    Args:
        images: per image, its candidates, where it sits in the network input, and its request's parameters.
        decode: keypoints of the survivors, in network-input pixels.
        num_anchors: see :func:`survivors`.
    """
    chosen = [survivors(candidates, parameters, num_anchors=num_anchors) for candidates, _, parameters in images]
    gathered = (
        [
            np.concatenate([getattr(candidates, name)[c.index] for (candidates, _, _), c in zip(images, chosen)])
            for name in ("pose_vectors", "boxes", "priors")
        ]
        if images
        else []
    )
    keypoints = decode(*gathered) if images and len(gathered[0]) else None
    results, start = [], 0
    for (candidates, box, parameters), c in zip(images, chosen):
        stop = start + len(c.index)
        own = (
            keypoints[start:stop] if keypoints is not None else np.zeros((0, _num_keypoints(candidates), 2), np.float32)
        )
        results.append(finish(candidates, c, own, box=box, parameters=parameters))
        start = stop
    return results


def _num_keypoints(candidates: Candidates) -> int:
    return int(candidates.keypoint_visibility.shape[-1])
