"""Request parameters and output packing shared by the Triton Python models; no Triton import.

Per-request parameters arrive as ``json.loads(request.parameters())``; results of one request's batch rows are
padded with zeros to that request's largest number of people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtmo.errors import InvalidInputError
from rtmo.processing import Poses

__all__ = ["OUTPUT_NAMES", "RequestParameters", "pack_poses", "parse_parameters", "select"]

OUTPUT_NAMES = ("boxes", "box_scores", "keypoints", "keypoint_scores", "num_people", "truncated")
_KNOWN = ("score_threshold", "nms_iou_threshold", "max_people", "pose_nms")


@dataclass(frozen=True)
class RequestParameters:
    """What one request asks for.

    Attributes:
        score_threshold: keep people scoring strictly above this, 0 <= value < 1.
        nms_iou_threshold: box NMS IoU threshold, 0 < value <= 1.
        max_people: at most this many people per image (best first); None keeps all.
        pose_nms: also run MMPose's nearby-joints pose NMS.
    """

    score_threshold: float = 0.1
    nms_iou_threshold: float = 0.65
    max_people: int | None = None
    pose_nms: bool = False


def _number(parameters: Mapping[str, Any], key: str, default: float) -> float:
    value = parameters.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"parameter {key}: got {value!r} ({type(value).__name__}); accepted: a finite number")
    return float(value)


def parse_parameters(parameters: Mapping[str, Any] | str | None) -> RequestParameters:
    """Validate a request's parameters (a mapping, or the JSON string ``request.parameters()`` returns).

    Unknown keys are refused so a misspelt parameter is not silently ignored; keys Triton or clients reserve
    (``triton_``/``sequence_`` prefixes, headers forwarded as ``headers``) are ignored.

    Raises:
        InvalidInputError: naming the parameter, the value given and what is accepted.
    """
    if parameters is None or parameters == "":
        return RequestParameters()
    if isinstance(parameters, str):
        import json

        parameters = json.loads(parameters)
    unknown = sorted(
        key for key in parameters if key not in _KNOWN and not key.startswith(("triton_", "sequence_", "priority", "timeout"))
    )
    if unknown:
        raise InvalidInputError(f"parameters {unknown}: unknown; accepted: {list(_KNOWN)}")
    score = _number(parameters, "score_threshold", RequestParameters.score_threshold)
    if not 0.0 <= score < 1.0:
        raise InvalidInputError(f"parameter score_threshold: got {score}; accepted: 0 <= value < 1")
    iou = _number(parameters, "nms_iou_threshold", RequestParameters.nms_iou_threshold)
    if not 0.0 < iou <= 1.0:
        raise InvalidInputError(f"parameter nms_iou_threshold: got {iou}; accepted: 0 < value <= 1")
    max_people = parameters.get("max_people")
    if max_people is not None and (isinstance(max_people, bool) or not isinstance(max_people, int) or max_people < 1):
        raise InvalidInputError(f"parameter max_people: got {max_people!r}; accepted: an integer >= 1")
    pose_nms = parameters.get("pose_nms", False)
    if not isinstance(pose_nms, bool):
        raise InvalidInputError(f"parameter pose_nms: got {pose_nms!r}; accepted: true or false")
    return RequestParameters(score, iou, max_people, pose_nms)


def pack_poses(poses: Sequence[Poses], *, num_keypoints: int) -> dict[str, np.ndarray]:
    """Stack one request's per-row results, zero-padded to the largest number of people among its rows.

    Args:
        poses: one ``Poses`` per batch row.
        num_keypoints: J, used for the shape of empty results.

    Returns:
        ``boxes`` (B, N, 4), ``box_scores`` (B, N), ``keypoints`` (B, N, J, 2), ``keypoint_scores`` (B, N, J)
        float32, ``num_people`` (B, 1) int32 and ``truncated`` (B, 1) bool.
    """
    rows = len(poses)
    width = max((len(p) for p in poses), default=0)
    out = {
        "boxes": np.zeros((rows, width, 4), np.float32),
        "box_scores": np.zeros((rows, width), np.float32),
        "keypoints": np.zeros((rows, width, num_keypoints, 2), np.float32),
        "keypoint_scores": np.zeros((rows, width, num_keypoints), np.float32),
        "num_people": np.zeros((rows, 1), np.int32),
        "truncated": np.zeros((rows, 1), np.bool_),
    }
    for row, pose in enumerate(poses):
        n = len(pose)
        out["boxes"][row, :n] = pose.bboxes
        out["box_scores"][row, :n] = pose.bbox_scores
        out["keypoints"][row, :n] = pose.keypoints
        out["keypoint_scores"][row, :n] = pose.keypoint_scores
        out["num_people"][row, 0] = n
        out["truncated"][row, 0] = pose.truncated
    return out


def select(poses: Poses, keep: np.ndarray) -> Poses:
    """The people of ``poses`` at indices ``keep``, in that order."""
    return Poses(poses.bboxes[keep], poses.bbox_scores[keep], poses.keypoints[keep], poses.keypoint_scores[keep],
                 poses.truncated)
