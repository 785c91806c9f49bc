"""COCO-format keypoint datasets with any keypoint set, checked completely before training starts.

The keypoint names and skeleton come from the annotation file (``categories[].keypoints`` / ``skeleton``, 1-based
links as COCO writes them); what COCO has no field for (OKS sigmas, flip pairs) from a small JSON spec file::

    {"sigmas": [0.025, 0.025, ...], "flip_pairs": [["left_eye", "right_eye"], ...]}

A 17-keypoint file without a spec gets COCO's sigmas and flip pairs. Crowd annotations (``iscrowd``) are left
out of the targets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rtmo.errors import RTMOError
from rtmo.head import COCO_SIGMAS
from rtmo.keypoints import layout_for
from rtmo.runtime.preprocess import letterbox

__all__ = ["DatasetError", "KeypointSet", "CocoKeypointDataset", "Sample"]

# Boxes may overhang the image by this much (pixels) before they count as outside it: COCO's own boxes do.
BOX_TOLERANCE_PX = 1.0
_COCO_FLIP_NAMES = (
    ("left_eye", "right_eye"),
    ("left_ear", "right_ear"),
    ("left_shoulder", "right_shoulder"),
    ("left_elbow", "right_elbow"),
    ("left_wrist", "right_wrist"),
    ("left_hip", "right_hip"),
    ("left_knee", "right_knee"),
    ("left_ankle", "right_ankle"),
)


class DatasetError(RTMOError, ValueError):
    """The dataset cannot be trained on; the message lists every problem found (file, annotation id, what)."""


@dataclass(frozen=True)
class KeypointSet:
    """Names, skeleton (0-based links), OKS sigmas and flip pairs (0-based index pairs) of the keypoints."""

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    flip_pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        k = len(self.names)
        if k < 1:
            raise DatasetError("KeypointSet.names: empty; accepted: at least one keypoint name")
        if len(self.sigmas) != k:
            raise DatasetError(f"KeypointSet.sigmas: {len(self.sigmas)} values for {k} keypoints; accepted: {k}")
        if not all(s > 0 for s in self.sigmas):
            raise DatasetError(f"KeypointSet.sigmas: got {list(self.sigmas)}; accepted: positive numbers")
        for name, pairs in (("skeleton", self.skeleton), ("flip_pairs", self.flip_pairs)):
            for a, b in pairs:
                if not (0 <= a < k and 0 <= b < k):
                    raise DatasetError(f"KeypointSet.{name}: link ({a}, {b}) outside 0..{k - 1}")

    @property
    def flip_indices(self) -> np.ndarray:
        """Index of each keypoint's mirror image (itself where it has none)."""
        indices = np.arange(len(self.names))
        for a, b in self.flip_pairs:
            indices[a], indices[b] = b, a
        return indices

    def as_dataset_meta(self) -> dict:
        """MMPose's ``dataset_meta`` fields for a checkpoint's ``meta``."""
        return dict(
            dataset_name="custom",
            num_keypoints=len(self.names),
            keypoint_id2name={i: n for i, n in enumerate(self.names)},
            keypoint_name2id={n: i for i, n in enumerate(self.names)},
            skeleton_links=[list(link) for link in self.skeleton],
            flip_pairs=[list(p) for p in self.flip_pairs],
            flip_indices=[int(i) for i in self.flip_indices],
            sigmas=np.array(self.sigmas, dtype=np.float32),
        )


@dataclass(frozen=True)
class Sample:
    """One image and its people, in image pixels: boxes xyxy (G, 4), keypoints (G, K, 2), visible (G, K) 0/1,
    areas (G,)."""

    image_id: int
    image_path: Path
    bboxes: np.ndarray
    keypoints: np.ndarray
    keypoints_visible: np.ndarray
    areas: np.ndarray

    def load_image(self) -> np.ndarray:
        """The image, (H, W, 3) uint8 BGR."""
        image = cv2.imread(str(self.image_path))
        if image is None:
            raise DatasetError(f"image {self.image_path} (id {self.image_id}): cannot be decoded")
        return image

    def targets(self) -> dict[str, np.ndarray]:
        """The people in image pixels as the ``ImageTargets`` fields (fresh arrays: transforms may change them)."""
        return dict(
            bboxes=self.bboxes.copy(),
            labels=np.zeros(len(self.bboxes), np.int64),
            keypoints=self.keypoints.copy(),
            keypoints_visible=self.keypoints_visible.copy(),
            areas=self.areas.copy(),
        )

    def letterboxed(self, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The image fitted into ``size``² (centred, padded with 114, the serving letterbox: the recipe's last
        stage without its random parts) and the targets moved along: ``(H, W, 3) uint8`` and ImageTargets fields."""
        image = self.load_image()
        canvas, box = letterbox(image, (size, size), name=str(self.image_path))
        factor = np.asarray(box.input_size, np.float64) / box.scale
        offset = 0.5 * box.scale - box.center

        def move(points: np.ndarray) -> np.ndarray:
            return ((points + offset) * factor).astype(np.float32)

        boxes = move(self.bboxes.reshape(-1, 2, 2)).reshape(-1, 4)
        return canvas, dict(
            bboxes=boxes,
            labels=np.zeros(len(boxes), np.int64),
            keypoints=move(self.keypoints),
            keypoints_visible=self.keypoints_visible.astype(np.float32),
            areas=(self.areas * float(factor[0] * factor[1])).astype(np.float32),
        )


def read_keypoint_set(category: dict, spec_path: Path | None, *, annotations: Path) -> KeypointSet:
    names = tuple(category.get("keypoints") or ())
    if not names:
        raise DatasetError(f"{annotations}: categories[0] has no 'keypoints' list (the keypoint names)")
    links = tuple((int(a) - 1, int(b) - 1) for a, b in category.get("skeleton") or ())
    if spec_path is None:
        if len(names) != 17:
            raise DatasetError(
                f"{annotations}: {len(names)} keypoints, and no keypoint spec file: give one with 'sigmas' "
                f"({len(names)} OKS sigmas) and 'flip_pairs' (pairs of keypoint names); only 17-keypoint (COCO) "
                "files default to COCO's"
            )
        coco = layout_for(17).names
        flips = tuple((names.index(a), names.index(b)) for a, b in _COCO_FLIP_NAMES if a in names and b in names)
        if names != coco:
            flips = ()
        return KeypointSet(names=names, skeleton=links, sigmas=COCO_SIGMAS, flip_pairs=flips)
    try:
        spec = json.loads(Path(spec_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"keypoint spec {spec_path}: cannot be read as JSON ({exc})") from exc
    missing = [key for key in ("sigmas", "flip_pairs") if key not in spec]
    if missing:
        raise DatasetError(f"keypoint spec {spec_path}: missing {missing}; accepted keys: sigmas, flip_pairs")
    flips = []
    for pair in spec["flip_pairs"]:
        unknown = [n for n in pair if n not in names]
        if len(pair) != 2 or unknown:
            raise DatasetError(
                f"keypoint spec {spec_path}: flip pair {pair}: accepted two names of {annotations}'s keypoints "
                f"{list(names)}" + (f"; unknown: {unknown}" if unknown else "")
            )
        flips.append((names.index(pair[0]), names.index(pair[1])))
    sigmas = tuple(float(s) for s in spec["sigmas"])
    if len(sigmas) != len(names):
        raise DatasetError(
            f"keypoint spec {spec_path}: {len(sigmas)} sigmas for the {len(names)} keypoints of {annotations}"
        )
    return KeypointSet(names=names, skeleton=links, sigmas=sigmas, flip_pairs=tuple(flips))


class CocoKeypointDataset:
    """The images of a COCO keypoint file that have people, checked.

    Args:
        annotations: the COCO JSON file.
        images: the folder its ``file_name`` entries are relative to.
        keypoint_spec: the spec file (sigmas, flip pairs); optional for 17 COCO keypoints.

    Raises:
        DatasetError: listing every missing image, keypoint count mismatch, box outside its image, annotation
            without box or keypoints, or a file without annotations.
    """

    def __init__(self, annotations: Path, images: Path, *, keypoint_spec: Path | None = None) -> None:
        self.annotations = Path(annotations)
        try:
            coco = json.loads(self.annotations.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{self.annotations}: cannot be read as a COCO JSON file ({exc})") from exc
        categories = [c for c in coco.get("categories", []) if c.get("keypoints")]
        if not categories:
            raise DatasetError(f"{self.annotations}: no category with a 'keypoints' list")
        self.keypoint_set = read_keypoint_set(categories[0], keypoint_spec, annotations=self.annotations)
        self.samples = self._read_samples(coco, Path(images))

    def __len__(self) -> int:
        return len(self.samples)

    def _read_samples(self, coco: dict, images: Path) -> list[Sample]:
        k = len(self.keypoint_set.names)
        problems: list[str] = []
        if not coco.get("annotations"):
            raise DatasetError(f"{self.annotations}: no annotations: nothing to train on")
        by_image: dict[int, list[dict]] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        samples = []
        for image in coco.get("images", []):
            anns = [a for a in by_image.get(int(image["id"]), []) if not a.get("iscrowd", 0)]
            if not anns:
                continue
            path = images / image["file_name"]
            if not path.is_file():
                problems.append(f"image {image['file_name']} (id {image['id']}): not found in {images}")
                continue
            width, height = float(image["width"]), float(image["height"])
            boxes, keypoints, visible, areas = [], [], [], []
            for ann in anns:
                where = f"annotation id {ann['id']} (image {image['file_name']})"
                values = ann.get("keypoints") or []
                if len(values) != 3 * k:
                    problems.append(f"{where}: {len(values)} keypoint values; expected {3 * k} ({k} keypoints × 3)")
                    continue
                x, y, w, h = (float(v) for v in ann.get("bbox") or (0, 0, 0, 0))
                points = np.asarray(values, np.float32).reshape(k, 3)
                if w <= 0 or h <= 0:
                    problems.append(f"{where}: box {ann.get('bbox')} is empty; accepted: width and height > 0")
                    continue
                t = BOX_TOLERANCE_PX
                if x < -t or y < -t or x + w > width + t or y + h > height + t:
                    problems.append(
                        f"{where}: box [x {x:g}, y {y:g}, w {w:g}, h {h:g}] outside the {width:g}x{height:g} image"
                    )
                    continue
                # clipped to the last pixel row and column, as MMPose's CocoDataset reads boxes
                boxes.append(np.clip([x, y, x + w, y + h], 0, [width - 1, height - 1] * 2))
                keypoints.append(points[:, :2])
                visible.append(np.minimum(points[:, 2], 1))
                areas.append(float(ann.get("area") or w * h))
            if boxes:
                samples.append(
                    Sample(
                        image_id=int(image["id"]),
                        image_path=path,
                        bboxes=np.asarray(boxes, np.float32),
                        keypoints=np.asarray(keypoints, np.float32),
                        keypoints_visible=np.asarray(visible, np.float32),
                        areas=np.asarray(areas, np.float32),
                    )
                )
        if problems:
            listed = "\n  ".join(problems[:50]) + (
                f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
            )
            raise DatasetError(f"{self.annotations}: {len(problems)} problem(s):\n  {listed}")
        if not samples:
            raise DatasetError(f"{self.annotations}: no image has a non-crowd annotation: nothing to train on")
        return samples
