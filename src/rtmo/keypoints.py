"""Keypoint names, skeletons and OKS sigmas of the datasets RTMO checkpoints are trained on (MMPose dataset
metainfo)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COCO_SIGMAS", "CROWDPOSE_SIGMAS", "KeypointLayout", "layout_for"]

# OKS sigmas per keypoint (MMPose stores them in ``head.loss_oks.sigmas``); 0.05 for a dataset we do not know.
COCO_SIGMAS = (
    *(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072),
    *(0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)
CROWDPOSE_SIGMAS = (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079)
_DEFAULT_SIGMA = 0.05


@dataclass(frozen=True)
class KeypointLayout:
    """Dataset name, keypoint names in model output order, skeleton links as index pairs, and OKS sigmas."""

    dataset: str
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]


def _links(names: tuple[str, ...], pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


_COCO_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
_COCO_LINKS = (
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"),
    ("nose", "left_eye"),
    ("nose", "right_eye"),
    ("left_eye", "left_ear"),
    ("right_eye", "right_ear"),
    ("left_ear", "left_shoulder"),
    ("right_ear", "right_shoulder"),
)
_CROWDPOSE_NAMES = (
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "top_head",
    "neck",
)
_CROWDPOSE_LINKS = (
    ("left_ankle", "left_knee"),
    ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_elbow", "right_wrist"),
    ("top_head", "neck"),
    ("right_shoulder", "neck"),
    ("left_shoulder", "neck"),
)

_LAYOUTS = {
    17: KeypointLayout("coco", _COCO_NAMES, _links(_COCO_NAMES, _COCO_LINKS), COCO_SIGMAS),
    14: KeypointLayout("crowdpose", _CROWDPOSE_NAMES, _links(_CROWDPOSE_NAMES, _CROWDPOSE_LINKS), CROWDPOSE_SIGMAS),
}


def layout_for(num_keypoints: int) -> KeypointLayout:
    """COCO for 17 keypoints, CrowdPose for 14; generic ``kpt_<i>`` names and no skeleton otherwise."""
    if num_keypoints in _LAYOUTS:
        return _LAYOUTS[num_keypoints]
    names = tuple(f"kpt_{i}" for i in range(num_keypoints))
    return KeypointLayout("custom", names, (), (_DEFAULT_SIGMA,) * num_keypoints)
