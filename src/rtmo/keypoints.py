"""Keypoint names, skeletons and OKS sigmas of the datasets RTMO checkpoints are trained on (MMPose dataset
metainfo)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COCO_SIGMAS", "CROWDPOSE_SIGMAS", "KeypointLayout", "layout_for", "layout_from_dataset_meta"]

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


def layout_from_dataset_meta(meta: object, num_keypoints: int) -> KeypointLayout:
    """The layout a checkpoint's ``meta['dataset_meta']`` names (``keypoint_id2name``, ``skeleton_links``), as
    ``rtmo train`` and MMPose write it; ``layout_for(num_keypoints)`` when it names none or another count."""
    if not isinstance(meta, dict):
        return layout_for(num_keypoints)
    names = meta.get("keypoint_id2name")
    if not isinstance(names, dict) or len(names) != num_keypoints:
        return layout_for(num_keypoints)
    try:
        ordered = tuple(str(names[i]) for i in range(num_keypoints))
        links = tuple((int(a), int(b)) for a, b in meta.get("skeleton_links") or ())
    except (KeyError, TypeError, ValueError):
        return layout_for(num_keypoints)
    if any(not (0 <= i < num_keypoints) for link in links for i in link):
        return layout_for(num_keypoints)
    sigmas = meta.get("sigmas")
    try:
        own = tuple(float(v) for v in sigmas) if sigmas is not None else ()
    except (TypeError, ValueError):
        own = ()
    if len(own) != num_keypoints:  # not recorded (or not usable): the known dataset's, else the default
        own = layout_for(num_keypoints).sigmas
    return KeypointLayout(str(meta.get("dataset_name", "custom")), ordered, links, own)
