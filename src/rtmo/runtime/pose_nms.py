"""MMPose's pose-based NMS for bottom-up results (``nearby_joints_nms``), in pure NumPy.

Mirrors ``mmpose.evaluation.functional.nms.nearby_joints_nms`` as ``Pose2DInferencer(pose_based_nms=True)`` calls
it: distance threshold 0.05 of each pose's keypoint extent, ``num_nearby_joints_thr = J // 3``, at most 30 poses.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nearby_joints_nms"]


def nearby_joints_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    *,
    dist_thr: float = 0.05,
    num_nearby_joints_thr: int | None = None,
    max_dets: int = 30,
) -> np.ndarray:
    """Indices of the poses to keep, in MMPose's order (by descending score, then limited to ``max_dets``).

    A pose is suppressed when more than ``num_nearby_joints_thr`` of its joints lie closer than ``dist_thr`` times
    the other pose's keypoint-extent diagonal to a better-scoring pose's joints.

    Args:
        keypoints: (N, J, 2) keypoint coordinates.
        scores: (N,) instance scores.
        dist_thr: joint distance threshold, relative to each pose's extent; must be > 0.
        num_nearby_joints_thr: how many close joints make two poses duplicates; default ``J // 2`` as in MMPose
            (the inferencer passes ``J // 3``); must be < J.
        max_dets: keep at most this many poses; 0 or less keeps all.

    Returns:
        (M,) int64 indices into the inputs.

    Raises:
        ValueError: if ``dist_thr`` <= 0, ``num_nearby_joints_thr`` >= J, or the shapes disagree.
    """
    if dist_thr <= 0:
        raise ValueError(f"dist_thr: got {dist_thr}; accepted: > 0")
    keypoints = np.asarray(keypoints)
    scores = np.asarray(scores)
    if keypoints.ndim != 3 or keypoints.shape[2] != 2 or scores.shape != keypoints.shape[:1]:
        raise ValueError(f"keypoints (N, J, 2) and scores (N,) expected, got {keypoints.shape} and {scores.shape}")
    num_people, num_joints, _ = keypoints.shape
    if num_people == 0:
        return np.zeros(0, dtype=np.int64)
    if num_nearby_joints_thr is None:
        num_nearby_joints_thr = num_joints // 2
    if num_nearby_joints_thr >= num_joints:
        raise ValueError(f"num_nearby_joints_thr: got {num_nearby_joints_thr}; accepted: < {num_joints} (joints)")

    extent = keypoints.max(axis=1) - keypoints.min(axis=1)
    pose_area = np.sqrt(np.power(extent, 2).sum(axis=1)).reshape(num_people, 1, 1)
    close_dist_thr = np.tile(pose_area, (num_people, num_joints)) * dist_thr
    instance_dist = np.sqrt(np.power(keypoints[:, None] - keypoints, 2).sum(axis=3))
    close_instance = (instance_dist < close_dist_thr).sum(2) > num_nearby_joints_thr

    ignored: set[int] = set()
    keep: list[int] = []
    for i in np.argsort(scores)[::-1]:
        if i in ignored:
            continue
        close = close_instance[i].nonzero()[0]
        best = int(close[np.argmax(scores[close])])
        if best not in ignored:
            keep.append(best)
            ignored.update(int(c) for c in close)
    if max_dets > 0 and len(keep) > max_dets:
        order = np.argsort(scores[keep])[-1 : -max_dets - 1 : -1]
        keep = [keep[i] for i in order]
    return np.asarray(keep, dtype=np.int64)
