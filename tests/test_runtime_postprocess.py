"""rtmo.runtime.postprocess and its parts: box NMS, survivors, the batch-wide decode, pose NMS, the anchor grid."""

from __future__ import annotations

import numpy as np

from rtmo.candidates import make_priors
from rtmo.runtime.pose_nms import nearby_joints_nms
from rtmo.runtime.postprocess import nms


def test_priors_are_centred_row_major_per_level():
    priors, strides = make_priors((640, 640))
    assert priors.shape == (2000, 2) and strides.shape == (2000,)
    np.testing.assert_array_equal(priors[0], [7.5, 7.5])
    np.testing.assert_array_equal(priors[1], [23.5, 7.5])  # x varies fastest
    np.testing.assert_array_equal(priors[40], [7.5, 23.5])
    np.testing.assert_array_equal(priors[1600], [15.5, 15.5])
    assert set(strides[:1600]) == {16} and set(strides[1600:]) == {32}


def test_nms_suppresses_only_overlaps_above_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10.5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    keep = nms(boxes, scores, 0.65)
    assert keep.tolist() == [3, 2]
    assert nms(boxes, scores, 0.99).tolist() == [3, 0, 1, 2]


def test_nearby_joints_nms_suppresses_a_shifted_duplicate_and_keeps_a_distant_pose() -> None:
    rng = np.random.default_rng(0)
    pose = rng.uniform(0, 100, (17, 2))
    keypoints = np.stack([pose, pose + 0.5, pose + 300])
    keep = nearby_joints_nms(keypoints, np.array([0.5, 0.9, 0.4]), num_nearby_joints_thr=17 // 3)
    np.testing.assert_array_equal(keep, [1, 2])


def test_nearby_joints_nms_limits_to_max_dets_best_first() -> None:
    keypoints = np.stack([np.full((5, 2), i * 1000.0) + np.arange(10).reshape(5, 2) for i in range(40)])
    scores = np.linspace(0.1, 0.9, 40)
    keep = nearby_joints_nms(keypoints, scores, num_nearby_joints_thr=1, max_dets=30)
    np.testing.assert_array_equal(keep, np.arange(39, 9, -1))
